// Where the page is: the screen (and the Models tab), kept in the URL's hash so it works
// under tauri:// and any origin, survives a reload and needs no server routes.

export type Screen = "models" | "servers" | "chat" | "settings";
export type ModelsTab = "discover" | "library";
export type Route = { screen: Screen; tab: ModelsTab };

const SCREENS: readonly Screen[] = ["models", "servers", "chat", "settings"];

export function parseHash(hash: string): Route {
  const [screen, tab] = hash.replace(/^#\/?/, "").split("/");
  return {
    screen: SCREENS.includes(screen as Screen) ? (screen as Screen) : "models",
    tab: tab === "library" ? "library" : "discover",
  };
}

export function hrefFor(screen: Screen, tab?: ModelsTab): string {
  return screen === "models" ? `#/models/${tab ?? "discover"}` : `#/${screen}`;
}

export class Router {
  route = $state<Route>({ screen: "models", tab: "discover" });
  /** The Models tab last shown, so coming back to Models returns to it. */
  #tab = $state<ModelsTab>("discover");
  readonly #onHash = () => this.#read();

  constructor() {
    if (typeof window !== "undefined") {
      this.#read();
      window.addEventListener("hashchange", this.#onHash);
    }
  }

  go(screen: Screen, tab?: ModelsTab): void {
    const next = hrefFor(screen, tab ?? (screen === "models" ? this.#tab : undefined));
    this.route = parseHash(next);
    if (screen === "models") this.#tab = this.route.tab;
    if (typeof window !== "undefined" && window.location.hash !== next) {
      window.location.hash = next;
    }
  }

  /** The link for a screen: Models leads back to the tab last shown. */
  href(screen: Screen): string {
    return hrefFor(screen, screen === "models" ? this.#tab : undefined);
  }

  dispose(): void {
    if (typeof window !== "undefined") window.removeEventListener("hashchange", this.#onHash);
  }

  #read(): void {
    this.route = parseHash(window.location.hash);
    if (this.route.screen === "models") this.#tab = this.route.tab;
  }
}
