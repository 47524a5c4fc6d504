import { defineConfig, Image } from "modal-image";

// Debian's own numpy, pandas and scikit-learn packages, so the image builds with nothing but a
// Debian mirror. examples/pypi.config.ts has the same image built from PyPI with uv.
const analyticsRuntime = Image.fromRegistry("debian:bookworm-slim")
  .aptInstall("git", "python3", "python3-numpy", "python3-pandas", "python3-sklearn")
  .runCommands("python3 -c 'import sklearn; print(\"scikit-learn\", sklearn.__version__)'");

export default defineConfig({
  // MODAL_IMAGE_REGISTRY or --registry point builds at another registry.
  registry: "127.0.0.1:5000",
  images: {
    "analytics-runtime": analyticsRuntime,
  },
});
