/// <reference types="vitest/config" />
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { svelteTesting } from "@testing-library/svelte/vite";
import { defineConfig } from "vite";

// `tauri dev` loads the page from this dev server; `tauri build` bundles dist/.
export default defineConfig({
  // svelteTesting (only under vitest): Svelte's browser build, and DOM cleanup after each test.
  plugins: [svelte(), svelteTesting()],
  // Relative asset URLs: works under tauri:// and wherever the management API mounts the UI.
  base: "./",
  // Keep Rust/cargo output visible when run by `tauri dev`.
  clearScreen: false,
  server: {
    port: 1420,
    strictPort: true,
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
  },
  test: {
    include: ["src/**/*.test.ts"],
    // Component tests say `// @vitest-environment jsdom` at their top; the rest run in node.
    environment: "node",
    setupFiles: ["src/test/setup.ts"],
  },
});
