/// <reference types="vitest/config" />
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vite";

// `tauri dev` loads the page from this dev server; `tauri build` bundles dist/.
export default defineConfig({
  plugins: [svelte()],
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
    environment: "node",
  },
});
