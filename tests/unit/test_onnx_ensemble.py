"""The ``--runtime onnx`` repository layout, checked offline where Triton's onnxruntime backend is absent:
every config parses as Triton's own ``ModelConfig`` protobuf; each ensemble's steps are wired to
tensors their models really have (and every tensor a step reads is written earlier); the towers'
configs match the exported graphs' input and output names, types and shapes; GPU instances get the
TensorRT execution provider in FP16 with a batch profile; and rebuilding with the torch runtime leaves
no step behind. (The served path is tests/integration/test_onnx_triton.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from vlserve.errors import InvalidInput
from vlserve.serving.onnx_ensemble import ENSEMBLE_STEPS
from vlserve.serving.repository import build_repository

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

ONNX_TYPES = {1: "TYPE_FP32", 7: "TYPE_INT64"}  # onnx.TensorProto element types used by the towers


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("repo")
    build_repository(out, "toy", runtime="onnx")
    return out


def parse(path: Path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def configs(repo: Path) -> dict:
    return {p.parent.name: parse(p) for p in sorted(repo.glob("*/config.pbtxt"))}


def test_every_config_is_a_valid_triton_model_config(repo):
    got = configs(repo)
    assert set(got) == {"image_encoder", "text_encoder", "zero_shot_classifier", "pixel_text", *ENSEMBLE_STEPS}
    assert got["image_encoder"].platform == got["text_encoder"].platform == "ensemble"
    assert got["image_tower"].backend == got["text_tower"].backend == "onnxruntime"
    for name in ("image_preprocess", "text_tokenize", "embedding_postprocess"):
        assert got[name].backend == "python" and (repo / name / "1" / "model.py").is_file()
        assert got[name].instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    for name in ("image_encoder", "text_encoder", "image_tower", "text_tower"):
        assert not (repo / name / "1" / "model.py").exists()
    zs = {k: v.string_value for k, v in got["zero_shot_classifier"].parameters.items()}
    assert zs["RUNTIME"] == "onnx" and (repo / zs["ONNX_DIR"] / "image_encoder.onnx").is_file()


def test_ensembles_keep_the_public_contract_and_wire_real_tensors(repo):
    from vlserve.api.tensors import IMAGE_ENCODER, TEXT_ENCODER

    got = configs(repo)
    for io in (IMAGE_ENCODER, TEXT_ENCODER):
        ens = got[io.name]
        assert [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims), t.optional) for t in ens.input] \
            == [(t.name, t.config_type, list(t.dims), t.optional) for t in io.inputs]
        assert [t.name for t in ens.output] == [t.name for t in io.outputs]
        available = {t.name for t in ens.input}
        for step in ens.ensemble_scheduling.step:
            model = got[step.model_name]
            assert set(step.input_map) <= {t.name for t in model.input}, step.model_name
            required = {t.name for t in model.input if not t.optional}
            assert required <= set(step.input_map), f"{step.model_name} misses {required - set(step.input_map)}"
            assert set(step.input_map.values()) <= available, f"{step.model_name} reads a tensor not written yet"
            assert set(step.output_map) <= {t.name for t in model.output}
            available |= set(step.output_map.values())
        assert {t.name for t in ens.output} <= available


@pytest.mark.parametrize("tower, graph", [("image_tower", "image_encoder.onnx"), ("text_tower", "text_encoder.onnx")])
def test_tower_configs_match_the_exported_graphs(repo, tower, graph):
    config = parse(repo / tower / "config.pbtxt")
    assert config.default_model_filename == graph
    model = onnx.load(str(repo / tower / "1" / graph))

    def signature(values):
        out = []
        for v in values:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            out.append((v.name, ONNX_TYPES[v.type.tensor_type.elem_type], dims[1:]))  # batch axis: max_batch_size
        return out

    def declared(tensors):
        return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors]

    def compatible(config_side, graph_side):  # a graph's symbolic dim (-1) accepts any size, as Triton checks
        return len(config_side) == len(graph_side) and all(
            c[:2] == g[:2] and len(c[2]) == len(g[2]) and all(b in (-1, a) for a, b in zip(c[2], g[2], strict=True))
            for c, g in zip(config_side, graph_side, strict=True))

    assert compatible(declared(config.input), signature(model.graph.input))
    assert compatible(declared(config.output), signature(model.graph.output))
    assert all(v.type.tensor_type.shape.dim[0].dim_param for v in model.graph.input)  # dynamic batch


def test_gpu_instances_get_tensorrt_fp16_with_a_batch_profile(repo):
    for tower in ("image_tower", "text_tower"):
        config = parse(repo / tower / "config.pbtxt")
        (accel,) = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert accel.name == "tensorrt"
        p = dict(accel.parameters)
        assert p["precision_mode"] == "FP16" and p["trt_engine_cache_enable"] == "1"
        assert p["trt_engine_cache_path"].endswith(tower)
        first = next(t.name for t in config.input)
        assert p["trt_profile_min_shapes"].startswith(f"{first}:1x")
        assert p["trt_profile_max_shapes"].startswith(f"{first}:{config.max_batch_size}x")
    text = dict(parse(repo / "text_tower" / "config.pbtxt").optimization.execution_accelerators
                .gpu_execution_accelerator[0].parameters)
    assert text["trt_profile_min_shapes"] == "text:1x1" and text["trt_profile_max_shapes"] == "text:64x32"


def test_python_towers_and_going_back_to_torch(tmp_path):
    build_repository(tmp_path, "toy", models=("image_encoder", "text_encoder"), runtime="onnx",
                     tower_backend="python")
    tower = parse(tmp_path / "image_tower" / "config.pbtxt")
    assert tower.backend == "python" and not tower.default_model_filename
    adapter = (tmp_path / "image_tower" / "1" / "model.py").read_text()
    assert "from vlserve.serving.backend_models.onnx_tower import" in adapter
    assert {k: v.string_value for k, v in tower.parameters.items()}["ONNX_FILE"] == "image_encoder.onnx"
    build_repository(tmp_path, "toy", models=("image_encoder", "text_encoder"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_encoder", "text_encoder"]
    assert parse(tmp_path / "image_encoder" / "config.pbtxt").backend == "python"
    with pytest.raises(InvalidInput, match="tower backend must be one of onnxruntime, python"):
        build_repository(tmp_path, "toy", runtime="onnx", tower_backend="tensorrt")


def test_the_launcher_names_a_missing_backend(repo, tmp_path):
    from vlserve.serving.launcher import missing_backends

    backends = tmp_path / "backends"
    (backends / "python").mkdir(parents=True)
    assert missing_backends(repo, backends) == {"onnxruntime": ["image_tower", "text_tower"]}
    (backends / "onnxruntime").mkdir()
    assert missing_backends(repo, backends) == {}
