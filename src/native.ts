// The native addon as seen from TypeScript. Internal: the public API is in
// session.ts and control.ts. Every type here comes from binding.d.ts, which
// `napi build` generates from the #[napi] items of crates/punktfunk-node, so
// the TypeScript layer fails to type-check when it and the Rust side disagree.

import type * as Binding from '../binding'

export type {
  NativeBenchRow,
  NativeBufferReport,
  NativeBundle,
  NativeConfig,
  NativeControlInfo,
  NativeDefaults,
  NativeEvent,
  NativeHost,
  NativeImpairment,
  NativeInput,
  NativePacing,
  NativeParams,
  NativeScaleRow,
  NativeSession,
  NativeUdpSink,
  NativeUdpSource,
} from '../binding'

/** @internal The whole addon: every function and class binding.d.ts declares. */
export type NativeBinding = typeof Binding

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
