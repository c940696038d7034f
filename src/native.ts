// The native addon's surface as seen from TypeScript. Internal: the public API
// is in session.ts; this file only mirrors crates/punktfunk-node/src/lib.rs.

/** @internal The core's session parameters in JS units (lib.rs `NativeParams`). */
export interface NativeParams {
  fecPercent: number
  maxDataShards: number
  shardPayload: number
  maxFrameBytes: number
  maxFramesInFlight: number
  frameTimeoutMs: number
  maxIndexLag: number
  recvCoalesceUs: number
  pacing?: NativePacing
  offload?: 'auto' | 'on' | 'off'
  busyPoll?: boolean
}

/** @internal Sender pacing (lib.rs `NativePacing`). */
export interface NativePacing {
  burstBytes: number
  chunkBytes: number
  ratePercent: number
  fixedRateKbps: number
}

/** @internal Everything a session needs, after normalisation (lib.rs `NativeConfig`). */
export interface NativeConfig {
  secret: Buffer
  context: Buffer
  params: NativeParams
  sendQueue: number
  recvQueue: number
  receive: boolean
}

/** @internal */
export interface NativeBurst {
  goodToBadPercent: number
  badToGoodPercent: number
  lossGoodPercent: number
  lossBadPercent: number
}

/** @internal */
export interface NativeImpairment {
  seed: number
  lossPercent: number
  dropEveryNth: number
  burst?: NativeBurst
  reorderPercent: number
  reorderDepth: number
  duplicatePercent: number
  corruptPercent: number
  truncatePercent: number
}

/** @internal */
export interface NativeEvent {
  kind: 'frame' | 'lost'
  index: number
  count: number
  pts: number
  keyframe: boolean
  recoveredShards: number
  data?: Buffer
}

/** @internal */
export interface NativeBufferReport {
  requested: number
  sendGranted: number
  recvGranted: number
  forced: boolean
  warning?: string
}

/** @internal */
export interface NativeDefaults {
  params: NativeParams
  socketBuffer: number
  maxQueue: number
}

/** @internal */
export interface NativeSession {
  trySubmit(data: Uint8Array, pts: number, keyframe: boolean): boolean
  writable(): boolean
  sendQueued(): number
  poll(): NativeEvent | null
  setFecPercent(percent: number): void
  stats(): number[]
  connect(peer: string): void
  localAddress(): string | null
  peerAddress(): string | null
  bufferReport(): NativeBufferReport | null
  close(code?: number, reason?: string): Promise<void>
  pollHostEvent(): NativeHostEvent | null
  controlInfo(): NativeControlInfo | null
  fecPercent(): number
  targetKbps(): number
  closeReason(): { code: number; reason: string } | null
  sendInput(event: NativeInput): void
  requestKeyframe(firstLost: number): void
  speedTest(targetKbps: number, durationMs: number): Promise<NativeProbeResult>
}

/** @internal */
export interface NativeInput {
  type: string
  code?: number
  dx?: number
  dy?: number
  x?: number
  y?: number
  button?: number
  down?: boolean
  pad?: number
  buttons?: number
  axis?: number
  value?: number
}

/** @internal */
export interface NativeHostEvent {
  kind: 'input' | 'keyframeRequest' | 'fecChanged' | 'targetBitrate' | 'closed'
  input?: NativeInput
  firstLost?: number
  percent?: number
  code?: number
  reason?: string
  kbps?: number
}

/** @internal */
export interface NativeControlInfo {
  sessionId: string
  grantedBitrateKbps: number
  fingerprint?: string
  peer?: string
}

/** @internal */
export interface NativeProbeResult {
  targetKbps: number
  deliveredKbps: number
  lossPercent: number
  sendDrops: number
  packetsSent: number
  packetsReceived: number
  durationMs: number
  rateKbps: number
}

/** @internal */
export interface NativeHostOptions {
  identityDir?: string
  bind: string
  params: NativeParams
  maxBitrateKbps: number
  idleTimeoutMs: number
  keepaliveMs: number
  adaptiveMin?: number
  adaptiveMax?: number
  socketBuffer: number
  sendQueue: number
  impairment?: NativeImpairment
  authorizedClients?: string[]
  adaptiveRate?: boolean
  initialKbps?: number
  minKbps?: number
  maxTotalKbps?: number
  probes?: boolean
  probeCeilingKbps?: number
}

/** @internal One case of the Rust benchmark (see `punktfunk_core::bench::Row`). */
export interface NativeBenchRow {
  name: string
  offload: boolean
  secs: number
  framesSent: number
  framesLost: number
  payloadBytes: number
  wireBytes: number
  packetsSent: number
  packetsReceived: number
  sendSyscalls: number
  recvSyscalls: number
  polls: number
  sendDrops: number
  txCpu: number
  rxCpu: number
  latencyP50Ms?: number | null
  latencyP99Ms?: number | null
  addedLatencyP99Ms?: number | null
  allocations: number
  steadyAllocationsPerPacket?: number | null
}

/** @internal One host serving several clients (bench.rs `NativeScaleRow`). */
export interface NativeScaleRow {
  clients: number
  seconds: number
  aggregateGoodputGbps: number
  perClientGbps: number[]
  hostCpuSeconds: number
  framesSent: number
  framesLost: number
  sendDrops: number
}

/** @internal One bundle from a UDP source, or its end (relay.rs). */
export interface NativeBundle {
  data?: Buffer | null
  datagrams: number
  end: boolean
  error?: string | null
}

/** @internal */
export interface NativeUdpSource {
  address(): string
  poll(): NativeBundle | null
  counters(): { datagrams: number; bundles: number; oversize: number; backlogDropped: number; refused: number }
  close(): void
}

/** @internal */
export interface NativeUdpSink {
  sendBundle(frame: Uint8Array): number
  sendBytes(bytes: Uint8Array, datagramBytes: number): number
  counters(): { datagrams: number; dropped: number; malformed: number }
  close(): void
}

/** @internal */
export interface NativeIdentity {
  dir: string
  fingerprint: string
  created: boolean
}

/** @internal */
export interface NativeClientOptions {
  pin?: string
  knownHosts?: string
  trustOnFirstUse: boolean
  requestedBitrateKbps: number
  connectTimeoutMs: number
  idleTimeoutMs: number
  keepaliveMs: number
  params: NativeParams
  socketBuffer: number
  recvQueue: number
  identityDir?: string
}

/** @internal */
export interface NativeHost {
  address(): string
  fingerprint(): string
  accept(timeoutMs: number, onWake: (kind: number) => void): Promise<NativeSession | null>
  close(reason: string): Promise<void>
}

/** @internal */
export interface NativeBinding {
  createUdpSession(
    role: string,
    bind: string,
    peer: string | undefined | null,
    socketBuffer: number,
    config: NativeConfig,
    onWake: (kind: number) => void,
  ): NativeSession
  createLoopbackPair(
    config: NativeConfig,
    impairment: NativeImpairment | undefined | null,
    onHostWake: (kind: number) => void,
    onClientWake: (kind: number) => void,
  ): NativeSession[]
  statsFields(): string[]
  hostListen(opts: NativeHostOptions): NativeHost
  loadIdentity(dir?: string | null): NativeIdentity
  benchRun(kase: string, seconds: number, rateMbps: number, offload: boolean): Promise<NativeBenchRow>
  benchScale(clients: number, rateMbps: number, seconds: number): Promise<NativeScaleRow>
  allocationCount(): number
  udpSourceOpen(bind: string, allow: string, maxBundle: number, windowUs: number, onWake: (kind: number) => void): NativeUdpSource
  udpSinkOpen(target: string): NativeUdpSink
  clientConnect(address: string, opts: NativeClientOptions, onWake: (kind: number) => void): Promise<NativeSession>
  inputConstants(): { buttons: Array<[string, number]>; axes: Array<[string, number]> }
  errorCodes(): string[]
  defaults(): NativeDefaults
  debugPanic(): void
}

/** @internal Wake-up kinds the addon passes to `onWake`. */
export const WAKE_READABLE = 1
/** @internal */
export const WAKE_WRITABLE = 2
/** @internal */
export const WAKE_EVENT = 3

let binding: NativeBinding | undefined

/** @internal Called once by the package entry (index.js) with the loaded addon. */
export function setNativeBinding(b: NativeBinding): void {
  binding = b
}

/** @internal The loaded addon. */
export function native(): NativeBinding {
  if (!binding) throw new Error('@punktfunk/core: load the package through its entry point (index.js)')
  return binding
}
