// The API key the dashboard sends, kept in sessionStorage: it lives as long as
// the tab, never reaches localStorage or a cookie, and is sent only as a bearer
// header to this same origin.
import { API_KEY_STORAGE_KEY, getApiKey, setUnauthorizedHandler } from './api';

class Auth {
  /** Whether a key is stored (the key itself is read from storage when needed). */
  hasKey = $state(getApiKey() !== null);
  /** The node answered 401: a key is needed, or the stored one was refused. */
  required = $state(false);
  /** Bumped whenever the key changes, so that views and the event stream start over. */
  version = $state(0);

  /** Stores a key (trimmed); an empty one clears it. */
  setKey(key: string): void {
    const k = key.trim();
    try {
      if (k) sessionStorage.setItem(API_KEY_STORAGE_KEY, k);
      else sessionStorage.removeItem(API_KEY_STORAGE_KEY);
    } catch {
      // Storage refused (privacy mode): the key cannot be kept, the UI still works without it.
    }
    this.hasKey = getApiKey() !== null;
    this.required = false;
    this.version++;
  }

  clear(): void {
    this.setKey('');
  }

  unauthorized(): void {
    this.required = true;
  }
}

export const auth = new Auth();
setUnauthorizedHandler(() => auth.unauthorized());
