// One piece of server state the dashboard shows (the node list, the models, ...),
// read with GET and re-read when an event says it changed. Never polled.
import { ApiError, errorMessage, getJSON, isNotAvailable, isUnauthorized } from './api';

export type LoadStatus = 'idle' | 'loading' | 'ok' | 'unavailable' | 'unauthorized' | 'error';

export type Loader<T> = () => Promise<{ data: T; source: string }>;

/**
 * A loader that GETs the first path that exists: a 404 (or 405/501) moves on to
 * the next, and when every path is missing the last "not available" error is
 * thrown, which Resource shows as a state of the node rather than a failure.
 */
export function fromPaths<T>(paths: string[], parse: (body: unknown, path: string) => T): Loader<T> {
  return async () => {
    let last: unknown = null;
    for (const path of paths) {
      try {
        const { body } = await getJSON(path);
        return { data: parse(body, path), source: path };
      } catch (err) {
        if (!isNotAvailable(err)) throw err;
        last = err;
      }
    }
    throw last ?? new ApiError('no path to load', 404);
  };
}

export class Resource<T> {
  status = $state<LoadStatus>('idle');
  data = $state<T | null>(null);
  error = $state('');
  /** Which path answered (for the fallback from /api/v1/models to /v1/models). */
  source = $state('');
  updated = $state<number | null>(null);

  private readonly loader: Loader<T>;
  private readonly debounceMs: number;
  private inFlight: Promise<void> | null = null;
  private again = false;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(loader: Loader<T>, debounceMs = 150) {
    this.loader = loader;
    this.debounceMs = debounceMs;
  }

  /** Reads now; a call during a read makes one more read after it, never a parallel one. */
  load(): Promise<void> {
    if (this.inFlight) {
      this.again = true;
      return this.inFlight;
    }
    this.inFlight = this.run().finally(() => {
      this.inFlight = null;
      if (this.again) {
        this.again = false;
        void this.load();
      }
    });
    return this.inFlight;
  }

  /** Asks for a read soon, merged with every other request in the same debounce window. */
  invalidate(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.load();
    }, this.debounceMs);
  }

  /** Drops a pending invalidate() (the view is going away). */
  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Replaces the data locally (from an event that carried the new state). */
  set(data: T): void {
    this.data = data;
    this.status = 'ok';
    this.error = '';
    this.updated = Date.now();
  }

  private async run(): Promise<void> {
    if (this.status !== 'ok') this.status = 'loading';
    try {
      const { data, source } = await this.loader();
      this.set(data);
      this.source = source;
    } catch (err) {
      if (isNotAvailable(err)) {
        this.status = 'unavailable';
        this.data = null;
        this.error = '';
      } else if (isUnauthorized(err)) {
        this.status = 'unauthorized';
        this.error = (err as ApiError).detail || 'the node wants an API key';
      } else {
        // Keep showing the last good data, next to the error.
        this.status = this.data === null ? 'error' : 'ok';
        this.error = errorMessage(err);
      }
    }
  }
}
