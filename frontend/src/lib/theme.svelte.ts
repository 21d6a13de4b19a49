// Light, dark, or whatever the system prefers. The choice is a preference, not
// a secret, so it lives in localStorage; the page applies it through
// <html data-theme>, which app.css reads.
export type Theme = 'system' | 'light' | 'dark';

const KEY = 'exo.theme';

function stored(): Theme {
  try {
    const v = localStorage.getItem(KEY);
    return v === 'light' || v === 'dark' ? v : 'system';
  } catch {
    return 'system';
  }
}

class ThemeState {
  theme = $state<Theme>(stored());

  constructor() {
    this.apply();
  }

  set(t: Theme): void {
    this.theme = t;
    try {
      if (t === 'system') localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, t);
    } catch {
      // not persisted; still applied for this page
    }
    this.apply();
  }

  /** system → light → dark → system */
  cycle(): void {
    this.set(this.theme === 'system' ? 'light' : this.theme === 'light' ? 'dark' : 'system');
  }

  private apply() {
    const root = globalThis.document?.documentElement;
    if (!root) return;
    if (this.theme === 'system') root.removeAttribute('data-theme');
    else root.setAttribute('data-theme', this.theme);
  }
}

export const theme = new ThemeState();
