/**
 * `@punktfunk/core/web`: the browser client. A page connects to a
 * `punktfunk host --web` over WebTransport (protocol `punktfunk-web/1`,
 * docs/WEB.md) and gets the native contract: frames arrive whole and
 * byte-exact, in index order, or are reported lost.
 *
 * ```ts
 * import { connect } from '@punktfunk/core/web'
 *
 * const client = await connect('https://127.0.0.1:7447/punktfunk', { certificateHash, signal })
 * for await (const frame of client.frames()) render(frame.data)
 * ```
 *
 * ES module, browser APIs only (WebTransport, WebCrypto, IndexedDB), which
 * need a secure context: https, or http on localhost.
 *
 * @packageDocumentation
 */
export { ERROR_CODES, isPunktfunkError, PunktfunkError, type PunktfunkErrorCode } from '../errors.js'
export { AnnexBSplitter, type AccessUnit, codecString, isAnnexB } from './annexb.js'
export {
  connect,
  WebClient,
  type CloseInfo,
  type ConnectOptions,
  type Frame,
  type FrameEvent,
  type LostFrames,
  type WaitOptions,
  type WebStats,
} from './client.js'
export { deviceFingerprint, deviceKey } from './device.js'
export { AXIS, BUTTON, type InputEvent } from './wire.js'
