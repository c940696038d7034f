/** The input events a client sends its host (docs/PROTOCOL.md §9.5), shared by the Node and browser SDKs. */

/** An input event from client to host. Key and button edges are never lost; motion, scroll and axes take the fastest path and may be superseded. */
export type InputEvent =
  | {
      /** A key went down. */
      type: 'keyDown'
      /** Key code, a `u32`. */
      code: number
    }
  | {
      /** A key came up. */
      type: 'keyUp'
      /** Key code, a `u32`. */
      code: number
    }
  | {
      /** Relative mouse motion. */
      type: 'mouseMove'
      /** Horizontal delta, an `i32`. */
      dx: number
      /** Vertical delta, an `i32`. */
      dy: number
    }
  | {
      /** Absolute mouse position. */
      type: 'mouseMoveAbsolute'
      /** Horizontal position, 0..=65535 across the screen. */
      x: number
      /** Vertical position, 0..=65535 down the screen. */
      y: number
    }
  | {
      /** A mouse button went down or up. */
      type: 'mouseButton'
      /** Button number (1 left, 2 middle, 3 right, 4/5 side), 0..=255. */
      button: number
      /** True when pressed. */
      down: boolean
    }
  | {
      /** Scroll wheel motion. */
      type: 'scroll'
      /** Horizontal amount, in 1/120 of a notch, an `i16`. */
      dx: number
      /** Vertical amount, in 1/120 of a notch, an `i16`. */
      dy: number
    }
  | {
      /** The full button state of a gamepad. */
      type: 'gamepadButtons'
      /** Gamepad number, 0..=255. */
      pad: number
      /** Pressed buttons, a bit set of `BUTTON` values. */
      buttons: number
    }
  | {
      /** One gamepad axis moved. */
      type: 'gamepadAxis'
      /** Gamepad number, 0..=255. */
      pad: number
      /** Which axis, one of `AXIS`. */
      axis: number
      /** Axis value: sticks −32768..=32767, triggers 0..=32767. */
      value: number
    }
