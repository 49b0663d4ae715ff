// Builds the page into ../imu/web_static (shipped in the Python package; served by `imu web`).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "../imu/web_static",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    sourcemap: false,
  },
});
