"""/v1/embeddings with the official `openai` SDK against `orchard serve`:

- a tiny random Qwen3-Embedding-shaped model (mlx-lm's qwen3 class, the
  SmolLM2 fixture's tokenizer, and sentence-transformers' modules.json and
  1_Pooling/config.json asking for last-token pooling and normalization),
  compared with the reference computed by mlx-lm on the same weights: its
  final hidden states, the last token's, L2-normalized;
- tiny random BERT models made by mlx-embeddings' own BERT class, one
  mean-pooled and normalized, one CLS-pooled, compared with what that class
  computes."""

import base64
import importlib
import importlib.util
import json
import shutil
import struct
import sys
import types

import mlx.core as mx
import numpy as np
import openai
import pytest
import requests
from mlx.utils import tree_flatten, tree_map
from mlx_lm.models import qwen3
from mlx_lm.utils import save_config
from tokenizers import Tokenizer

from conftest import MODEL, ROOT, serve

FIXTURE = ROOT / ".deps" / "models" / MODEL
NAME = "Tiny-Qwen3-Embedding"
TEXTS = [
    "The cat sat on the mat.",
    "A much longer sentence about the weather in Paris, which was sunny and warm all week long.",
    "Hi",
]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    """The model folder, the model object and the tokenizer, for references."""
    folder = tmp_path_factory.mktemp("models") / NAME
    folder.mkdir()
    vocab = json.loads((FIXTURE / "config.json").read_text())["vocab_size"]
    config = {
        "model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6,
        "vocab_size": vocab, "max_position_embeddings": 512, "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    }
    mx.random.seed(3)
    model = qwen3.Model(qwen3.ModelArgs.from_dict(config))
    model.update(tree_map(lambda w: w * 0.5, model.parameters()))
    model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    # As Hugging Face ships Qwen3-Embedding: the bare model, no `model.` prefix.
    weights = {name.removeprefix("model."): w for name, w in tree_flatten(model.parameters())}
    mx.save_safetensors(str(folder / "model.safetensors"), weights)
    save_config(config, folder / "config.json")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(FIXTURE / name, folder / name)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 64, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False, "pooling_mode_lasttoken": True,
    }))
    return folder, model, Tokenizer.from_file(str(FIXTURE / "tokenizer.json"))


def reference(embedder, text):
    _, model, tokenizer = embedder
    ids = tokenizer.encode(text).ids
    hidden = model.model(mx.array([ids]))[0, -1].astype(mx.float32)
    vector = np.array(hidden / mx.linalg.norm(hidden))
    return vector, len(ids)


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def mlx_embeddings_bert():
    """mlx-embeddings' BERT module. The package's own __init__ imports
    mlx-vlm (for its vision models), which is not installed: the module is
    imported under a bare package instead."""
    if "mlx_embeddings" not in sys.modules:
        spec = importlib.util.find_spec("mlx_embeddings")
        assert spec is not None, "mlx-embeddings is missing: run `make setup`"
        package = types.ModuleType("mlx_embeddings")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["mlx_embeddings"] = package
    return importlib.import_module("mlx_embeddings.models.bert")


BERT_POOLING = {"Tiny-BERT-Mean": ("pooling_mode_mean_tokens", True), "Tiny-BERT-CLS": ("pooling_mode_cls_token", False)}


@pytest.fixture(scope="module")
def berts(tmp_path_factory):
    """Two folders with the same random BERT, pooled two ways, and the model."""
    bert = mlx_embeddings_bert()
    vocab = json.loads((FIXTURE / "config.json").read_text())["vocab_size"]
    config = {
        "model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "max_position_embeddings": 128, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu", "vocab_size": vocab,
    }
    mx.random.seed(5)
    model = bert.Model(bert.ModelArgs.from_dict(config))
    model.update(tree_map(lambda w: w * 0.5, model.parameters()))
    model.set_dtype(mx.float32)
    model.eval()  # MLX modules start in training mode, with dropout on
    mx.eval(model.parameters())
    root = tmp_path_factory.mktemp("berts")
    folders = {}
    for name, (mode, normalize) in BERT_POOLING.items():
        folder = root / name
        folder.mkdir()
        mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())))
        (folder / "config.json").write_text(json.dumps(config))
        for file in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(FIXTURE / file, folder / file)
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 64, mode: True}))
        folders[name] = folder
    return folders, model


@pytest.fixture(scope="module")
def port(embedder, berts):
    with serve([embedder[0], *berts[0].values(), FIXTURE]) as server:
        yield server


@pytest.fixture(scope="module")
def client(port):
    return openai.OpenAI(base_url=port.base_url + "/v1", api_key=port.key, max_retries=0, timeout=300)


def test_vectors_match_the_reference_batched_and_alone(client, embedder):
    together = client.embeddings.create(model=NAME, input=TEXTS)
    assert [d.index for d in together.data] == [0, 1, 2]
    tokens = 0
    for text, item in zip(TEXTS, together.data):
        expected, count = reference(embedder, text)
        tokens += count
        assert len(item.embedding) == 64
        assert cosine(item.embedding, expected) >= 0.9999, text
        # Alone, the same vector: padding beside it changes nothing.
        alone = client.embeddings.create(model=NAME, input=text).data[0].embedding
        assert cosine(alone, item.embedding) >= 0.9999
    assert together.usage.prompt_tokens == tokens == together.usage.total_tokens
    # Different texts, different directions: the comparison above can fail.
    assert cosine(together.data[0].embedding, together.data[1].embedding) < 0.99


def test_token_arrays_dimensions_and_base64(client, embedder):
    _, _, tokenizer = embedder
    ids = tokenizer.encode(TEXTS[0]).ids
    by_text = np.array(client.embeddings.create(model=NAME, input=TEXTS[0]).data[0].embedding)
    by_ids = client.embeddings.create(model=NAME, input=ids).data[0].embedding
    assert cosine(by_ids, by_text) >= 0.9999
    many = client.embeddings.create(model=NAME, input=[ids, ids[:3]])
    assert len(many.data) == 2

    short = np.array(client.embeddings.create(model=NAME, input=TEXTS[0], dimensions=16).data[0].embedding)
    assert short.shape == (16,) and abs(np.linalg.norm(short) - 1) < 1e-5
    assert cosine(short, by_text[:16]) >= 0.9999

    # The SDK asks for base64 by default when numpy is present and decodes it;
    # here the raw answer is read and decoded by hand.
    raw = client.embeddings.with_raw_response.create(model=NAME, input=TEXTS[0], encoding_format="base64")
    packed = json.loads(raw.text)["data"][0]["embedding"]
    decoded = struct.unpack("<64f", base64.b64decode(packed))
    assert cosine(decoded, by_text) >= 0.9999


def test_a_hundred_inputs_in_one_request(client, embedder):
    texts = [f"Sentence number {i} is about {'cats' if i % 2 else 'dogs'}." for i in range(100)]
    result = client.embeddings.create(model=NAME, input=texts)
    assert len(result.data) == 100
    for i in (0, 57, 99):
        expected, _ = reference(embedder, texts[i])
        assert cosine(result.data[i].embedding, expected) >= 0.9999


def test_models_mark_embedding_models_and_each_kind_refuses_the_other(client, port):
    models = {m.id: m for m in client.models.list().data}
    assert models[NAME].model_extra["embedding"] is True
    assert models[MODEL].model_extra["embedding"] is False
    # The window's Library badges them too, from the same files.
    library = requests.get(port.base_url + "/api/library", headers={"Authorization": f"Bearer {port.key}"}, timeout=60)
    capabilities = {m["id"]: m["facts"]["capabilities"] for m in library.json()}
    assert "embeddings" in capabilities[NAME] and "embeddings" in capabilities["Tiny-BERT-Mean"]
    assert "embeddings" not in capabilities[MODEL]

    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert chat.value.body["param"] == "model" and "/v1/embeddings" in chat.value.body["message"]
    with pytest.raises(openai.BadRequestError) as embed:
        client.embeddings.create(model=MODEL, input="Hi")
    assert embed.value.body["param"] == "model" and "embedding model" in embed.value.body["message"]

    too_long = "word " * 600
    with pytest.raises(openai.BadRequestError) as long:
        client.embeddings.create(model=NAME, input=too_long)
    assert long.value.body["code"] == "context_length_exceeded"
    cut = client.embeddings.create(model=NAME, input=too_long, extra_body={"truncate": True})
    assert cut.usage.prompt_tokens == 512

    for bad in ([], [[]], [1.5], {"text": "x"}):
        with pytest.raises(openai.BadRequestError) as error:
            client.embeddings.create(model=NAME, input=bad)
        assert error.value.body["param"] == "input", bad


def test_bert_models_match_mlx_embeddings(client, embedder, berts):
    _, model = berts
    _, _, tokenizer = embedder
    for name, (mode, normalize) in BERT_POOLING.items():
        result = client.embeddings.create(model=name, input=TEXTS)
        for text, item in zip(TEXTS, result.data):
            ids = tokenizer.encode(text).ids
            states = model(mx.array([ids])).last_hidden_state[0].astype(mx.float32)
            expected = states.mean(axis=0) if mode == "pooling_mode_mean_tokens" else states[0]
            if normalize:
                expected = expected / mx.linalg.norm(expected)
            assert cosine(item.embedding, np.array(expected)) >= 0.9999, (name, text)
            # Without Normalize the vector keeps its length.
            length = float(np.linalg.norm(item.embedding))
            assert abs(length - float(mx.linalg.norm(expected))) < 1e-3 * max(1.0, length), (name, length)
        assert cosine(result.data[0].embedding, result.data[1].embedding) < 0.99
