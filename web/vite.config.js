// Builds the page into ../imu/web_static (shipped in the Python package; served by `imu web`).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  // `npm run dev` against a running `imu web --listen 127.0.0.1:8080 ...`
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8080",
      "/reports": "http://127.0.0.1:8080",
      "/ws": { target: "ws://127.0.0.1:8080", ws: true },
    },
  },
  build: {
    outDir: "../imu/web_static",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    sourcemap: false,
  },
});
