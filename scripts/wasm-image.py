#!/usr/bin/env python3
"""Packs the release module as a Wasm OCI image (the OCI artifact layout Istio and Envoy Gateway
pull: a config of type application/vnd.module.wasm.config.v1+json and one layer of type
application/vnd.module.wasm.content.layer.v1+wasm holding the module), in an OCI image layout
under target/oci/nhi-guard, and prints the image's digest.

The layout is deterministic (no timestamps), so the digest depends on the module alone. Push it with
a tool that keeps the manifest as is, e.g. `skopeo copy oci:target/oci/nhi-guard:0.1.0
docker://registry.bank.example/security/nhi-guard:0.1.0`, and pin that digest in the fleet
manifests (`scripts/render-manifests.py` does).

Usage: scripts/wasm-image.py [MODULE]   (default target/wasm32-wasip1/release/nhi_guard.wasm)
"""
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "0.1.0"


def blob(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest.split(":")[1])
    with open(path, "wb") as f:
        f.write(data)
    return digest, len(data)


def build(module_path):
    with open(module_path, "rb") as f:
        module = f.read()
    layout = os.path.join(ROOT, "target", "oci", "nhi-guard")
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    config = json.dumps({"created": "1970-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip1",
                         "layerDigests": ["sha256:" + hashlib.sha256(module).hexdigest()]},
                        sort_keys=True, separators=(",", ":")).encode()
    config_digest, config_size = blob(layout, config)
    layer_digest, layer_size = blob(layout, module)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.module.wasm.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.module.wasm.content.layer.v1+wasm", "digest": layer_digest,
                    "size": layer_size, "annotations": {"org.opencontainers.image.title": "plugin.wasm"}}],
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest, manifest_size = blob(layout, manifest)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": TAG}}]}, f)
    return manifest_digest


if __name__ == "__main__":
    module = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/wasm32-wasip1/release/nhi_guard.wasm")
    print(build(module))
