"""Independent reference for gradscale's given-weights measurement (numpy only, no gradscale code).

Writes, under tests/data/:
  torch_mlp.safetensors  the state_dict of torch.nn.Sequential(Linear(4, 6), Tanh(), Linear(6, 5), ReLU(),
                         Linear(5, 3)) in float64, laid out as safetensors.torch.save_file writes it
                         (keys "0.weight", "0.bias", "2.weight", ...; weights [out, in], row-major)
  torch_mlp_inputs.npy   five input rows, float64
  torch_mlp_gsc.json     per input row and layer l: ln GSC(L, l) and ln GSC(l, 0), with
                         GSC(k, l) = ||df_k/df_l||_F / sqrt(n_l) * ||f_l|| / ||f_k||  (f_0 = x), from
                         Jacobians built here as products of W and diag(phi') (exact, not finite differences)
  torch_mlp.toml         the architecture file that names those tensors

Run: python3 tests/independent/torch_layout_gsc.py   (from the repository root)
"""

import json
import struct

import numpy as np

rng = np.random.default_rng(20261207)
sizes = [4, 6, 5, 3]
acts = ["tanh", "relu", None]
W = [rng.normal(0.0, 1.0 / np.sqrt(sizes[i]), (sizes[i + 1], sizes[i])) for i in range(3)]
b = [rng.normal(0.0, 0.1, sizes[i + 1]) for i in range(3)]
X = rng.normal(0.0, 1.0, (5, 4))


def phi(name, h):
    return np.tanh(h) if name == "tanh" else (np.maximum(h, 0.0) if name == "relu" else h)


def dphi(name, h):
    if name == "tanh":
        return 1.0 - np.tanh(h) ** 2
    if name == "relu":
        return (h > 0).astype(float)
    return np.ones_like(h)


def layer_jacobians(x):
    """Layer outputs f_0..f_3 and per-layer Jacobians df_l/df_{l-1}."""
    fs, js = [x], []
    for Wl, bl, a in zip(W, b, acts):
        h = Wl @ fs[-1] + bl
        js.append(dphi(a, h)[:, None] * Wl)
        fs.append(phi(a, h))
    return fs, js


def jac(js, k, l):
    """df_k/df_l for k >= l."""
    m = np.eye(sizes[l])
    for i in range(l, k):
        m = js[i] @ m
    return m


def ln_gsc(fs, js, k, l):
    J = jac(js, k, l)
    return float(
        np.log(np.linalg.norm(J)) - 0.5 * np.log(sizes[l]) + np.log(np.linalg.norm(fs[l])) - np.log(np.linalg.norm(fs[k]))
    )


L = 3
rows = []
for x in X:
    fs, js = layer_jacobians(x)
    rows.append(
        {
            "to_output": [ln_gsc(fs, js, L, l) for l in range(L + 1)],
            "from_input": [ln_gsc(fs, js, k, 0) for k in range(L + 1)],
        }
    )

tensors = {}
for i, idx in enumerate([0, 2, 4]):
    tensors[f"{idx}.weight"] = W[i]
    tensors[f"{idx}.bias"] = b[i]

# safetensors layout: u64 LE header length, JSON header (sorted keys, offsets into the data), data.
header, data, off = {}, b"", 0
for name in sorted(tensors):
    t = np.ascontiguousarray(tensors[name], dtype="<f8")
    raw = t.tobytes(order="C")
    header[name] = {"dtype": "F64", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
    data += raw
    off += len(raw)
header["__metadata__"] = {"format": "pt"}
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open("tests/data/torch_mlp.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)

np.save("tests/data/torch_mlp_inputs.npy", X.astype("<f8"))
with open("tests/data/torch_mlp_gsc.json", "w") as f:
    json.dump({"rows": rows}, f, indent=1)
with open("tests/data/torch_mlp.toml", "w") as f:
    f.write(
        """# torch.nn.Sequential(Linear(4, 6), Tanh(), Linear(6, 5), ReLU(), Linear(5, 3)): the module index is
# the tensor prefix of its state_dict. sigma_w2 describes the initial distribution (used by `check`),
# not the given weights.
name = "torch-mlp"

[input]
width = 4

[[layers]]
ops = [{ dense = { width = 6, sigma_w2 = 1.0, weight = "0.weight", bias = "0.bias" } }, { act = "tanh" }]

[[layers]]
ops = [{ dense = { width = 5, sigma_w2 = 2.0, weight = "2.weight", bias = "2.bias" } }, { act = "relu" }]

[[layers]]
ops = [{ dense = { width = 3, sigma_w2 = 1.0, weight = "4.weight", bias = "4.bias" } }]
"""
    )
print("wrote tests/data/torch_mlp.{safetensors,toml}, torch_mlp_inputs.npy, torch_mlp_gsc.json")
