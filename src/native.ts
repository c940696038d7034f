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
  close(): Promise<void>
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
  errorCodes(): string[]
  defaults(): NativeDefaults
  debugPanic(): void
}

/** @internal Wake-up kinds the addon passes to `onWake`. */
export const WAKE_READABLE = 1
/** @internal */
export const WAKE_WRITABLE = 2

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
