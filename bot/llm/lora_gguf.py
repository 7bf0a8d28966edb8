"""Write a PEFT LoRA adapter as a GGUF adapter that llama.cpp applies on top of the base GGUF.

Training saves adapters the PEFT way; llama.cpp reads `<gguf tensor name>.lora_a` / `.lora_b`
pairs with `adapter.lora.alpha` in the metadata. Two details matter for identical answers:
tensor names go through gguf's own name map (the same one the base conversion used), and
the q/k projections' `lora_b` rows are permuted exactly as llama.cpp's converter permutes the
base q/k weights for rotary embeddings (W = B·A, so permuting W's rows permutes B's rows).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from bot.errors import BotError

log = logging.getLogger(__name__)

PEFT_PREFIX = "base_model.model."
# The GGUF copy of an adapter inside its registry version folder (written by training).
ADAPTER_GGUF = "adapter.gguf"
SUPPORTED_ARCHES = {"llama"}


class AdapterConversionError(BotError):
    """The adapter cannot be written as GGUF (unsupported architecture or layer)."""


def _permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary reordering of q/k output rows (pairs of halves per head interleaved)."""
    out = weights.shape[0]
    return (
        weights.reshape(n_head, 2, out // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _base_metadata(base_gguf: Path) -> tuple[str, int, int, int]:
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))

    def field(key: str) -> object:
        found = reader.fields.get(key)
        if found is None:
            raise AdapterConversionError(f"{base_gguf.name}: no {key} in its metadata")
        return found.contents()

    arch = str(field("general.architecture"))
    n_head = int(field(f"{arch}.attention.head_count"))  # type: ignore[call-overload]
    kv_key = f"{arch}.attention.head_count_kv"
    n_kv = int(reader.fields[kv_key].contents()) if kv_key in reader.fields else n_head
    n_blocks = int(field(f"{arch}.block_count"))  # type: ignore[call-overload]
    return arch, n_head, n_kv, n_blocks


def peft_adapter_to_gguf(adapter_dir: Path, base_gguf: Path, out_path: Path) -> Path:
    """Convert `adapter_dir` (adapter_config.json + adapter_model.safetensors) into `out_path`, atomically."""
    import gguf
    from safetensors.numpy import load_file

    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise AdapterConversionError(
            f"{adapter_dir}: not a PEFT adapter (needs adapter_config.json and adapter_model.safetensors)"
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterConversionError(f"{adapter_dir}: peft_type {config.get('peft_type')} is not LoRA")
    arch, n_head, n_kv, n_blocks = _base_metadata(base_gguf)
    if arch not in SUPPORTED_ARCHES:
        raise AdapterConversionError(f"{base_gguf.name}: architecture {arch!r} is not supported for LoRA GGUF")
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    if config.get("use_rslora"):  # llama.cpp scales by alpha / r; rsLoRA means alpha / sqrt(r)
        alpha *= math.sqrt(rank)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    tensors = load_file(str(weights_path))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        if ".lora_A." in key:
            part = "a"
        elif ".lora_B." in key:
            part = "b"
        else:
            raise AdapterConversionError(f"{adapter_dir}: tensor {key} is not a LoRA A/B weight")
        module = key.split(".lora_")[0].removeprefix(PEFT_PREFIX)
        gguf_name = name_map.get_name(module + ".weight", try_suffixes=(".weight",))
        if gguf_name is None:
            raise AdapterConversionError(f"{adapter_dir}: layer {module} has no llama.cpp equivalent")
        pairs.setdefault(gguf_name, {})[part] = value.astype(np.float32)
    if not pairs:
        raise AdapterConversionError(f"{adapter_dir}: the adapter holds no LoRA weights")
    writer_tmp = tempfile.NamedTemporaryFile(
        prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent, delete=False
    )
    writer_tmp.close()
    tmp = Path(writer_tmp.name)
    try:
        writer = gguf.GGUFWriter(str(tmp), arch=arch)
        writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for gguf_name in sorted(pairs):
            pair = pairs[gguf_name]
            if set(pair) != {"a", "b"}:
                raise AdapterConversionError(f"{adapter_dir}: {gguf_name} lacks its lora_A or lora_B half")
            lora_a, lora_b = pair["a"], pair["b"]
            if ".attn_q." in gguf_name:
                lora_b = _permute_rows(lora_b, n_head)
            elif ".attn_k." in gguf_name:
                lora_b = _permute_rows(lora_b, n_kv)
            base_name = gguf_name.removesuffix(".weight")
            writer.add_tensor(f"{base_name}.weight.lora_a", np.ascontiguousarray(lora_a))
            writer.add_tensor(f"{base_name}.weight.lora_b", np.ascontiguousarray(lora_b))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote GGUF LoRA adapter %s (%d layers, r=%d, alpha=%.1f)", out_path, len(pairs), rank, alpha)
    return out_path


def _field_text(reader: object, key: str) -> str | None:
    found = reader.fields.get(key)  # type: ignore[attr-defined]
    return None if found is None else str(found.contents())


def validate_adapter_gguf(path: Path, base_gguf: Path) -> None:
    """Refuse a GGUF adapter llama.cpp would choke on, before llama.cpp sees it.

    llama.cpp trusts the file: a copy cut short by a full disk or an interrupted transfer
    crashes the whole process (seen here: a segmentation fault while loading), taking the
    served model down with it. Reading the header and every tensor's extent in Python first
    turns that into an error the hot swap can log while the current adapter keeps serving.
    """
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError for a bad magic, truncated tensor data, ...
        raise AdapterConversionError(f"{path}: not a readable GGUF file ({exc})") from exc
    if _field_text(reader, gguf.Keys.General.TYPE) != gguf.GGUFType.ADAPTER or _field_text(
        reader, gguf.Keys.Adapter.TYPE
    ) != "lora":
        raise AdapterConversionError(f"{path}: not a LoRA adapter GGUF (general.type / adapter.type)")
    size = path.stat().st_size
    base = {t.name: [int(x) for x in t.shape] for t in gguf.GGUFReader(str(base_gguf)).tensors}
    halves: dict[str, dict[str, list[int]]] = {}
    for tensor in reader.tensors:
        if int(tensor.data_offset) + int(tensor.n_bytes) > size:
            raise AdapterConversionError(f"{path}: tensor {tensor.name} runs past the end of the file")
        name, _, part = tensor.name.rpartition(".lora_")
        if part not in ("a", "b") or name not in base:
            raise AdapterConversionError(f"{path}: tensor {tensor.name} matches no weight of {base_gguf.name}")
        halves.setdefault(name, {})[part] = [int(x) for x in tensor.shape]
    if not halves:
        raise AdapterConversionError(f"{path}: the adapter holds no LoRA tensors")
    for name, pair in halves.items():
        if set(pair) != {"a", "b"}:
            raise AdapterConversionError(f"{path}: {name} lacks its lora_a or lora_b half")
        fan_in, fan_out = base[name][0], base[name][1]  # ggml order: [in, out]
        (a_in, rank), (b_rank, b_out) = pair["a"], pair["b"]
        if (a_in, b_out, b_rank) != (fan_in, fan_out, rank):
            raise AdapterConversionError(
                f"{path}: {name} has LoRA shapes {pair['a']} / {pair['b']}, which do not fit the base weight {base[name]}"
            )
