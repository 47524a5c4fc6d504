import { defineConfig, Image } from "modal-image";

// The analytics runtime as Modal users write it: Python 3.12 from the official slim image and
// the scientific stack from PyPI through uv. Building it needs Docker Hub, ghcr.io and PyPI.
export default defineConfig({
  images: {
    "analytics-runtime": Image.debianSlim({ pythonVersion: "3.12" })
      .aptInstall("git")
      .uvPipInstall("numpy", "pandas", "scikit-learn")
      .runCommands("python -c 'import sklearn; print(sklearn.__version__)'"),
  },
});
