/**
 * The in-memory buffer between a log call and the file: pino serializes each
 * event into it (it is pino's destination), and it says when a batch is due —
 * at `bufferSize` events (the caller checks {@link EventBuffer.count}) or
 * `flushIntervalMs` after the first event of a batch (its timer).
 */

/** Serialized events waiting to be written, in call order. */
export class EventBuffer {
  #text = '';
  #count = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #intervalMs: number;
  readonly #onDue: () => void;

  /**
   * @param intervalMs - longest wait of the first event of a batch
   * @param onDue - called when that wait is over
   */
  constructor(intervalMs: number, onDue: () => void) {
    this.#intervalMs = intervalMs;
    this.#onDue = onDue;
  }

  /** pino's destination: appends one serialized line. */
  write(line: string): void {
    this.#text += line;
    this.#count++;
  }

  /** Events held. */
  get count(): number {
    return this.#count;
  }

  /** Characters held (about the bytes, for JSON that is mostly ASCII). */
  get chars(): number {
    return this.#text.length;
  }

  /** Starts the batch timer unless it runs already. The timer is unref'd: the exit handler writes what is left. */
  arm(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#onDue();
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /** Empties the buffer and returns what it held, one line per event. */
  take(): { readonly text: string; readonly count: number } {
    const batch = { text: this.#text, count: this.#count };
    this.#text = '';
    this.#count = 0;
    this.disarm();
    return batch;
  }

  /** Stops the batch timer. */
  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
