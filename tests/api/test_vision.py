"""Images through the port (issue 12), with the official `openai` and
`anthropic` SDKs against `orchard serve`, compared with the reference.

The model is a small random-weight Gemma 3 with images, built and saved by
mlx-vlm's own classes (scripts/vision_reference.py). The reference is
mlx-vlm's path for the same image and prompt: `load_image` on the same data
URL, the processor `load_processor` gives (transformers' Gemma3Processor) on
the chat template's text, then `get_input_embeddings` and the language model,
greedy. Orchard follows the template, so the processor is asked not to add
the second `<bos>` mlx-vlm would (see docs/vision.md).
"""

import base64
import io
import subprocess
import sys

import anthropic
import mlx.core as mx
import numpy as np
import openai
import pytest
from PIL import Image

from conftest import MODEL, ROOT, serve

NAME = "Tiny-Gemma3-Vision"
PROMPT = "Describe this image."
MAX_TOKENS = 8
IMAGE_TOKEN = 262144
EOS = {1, 106}


def png(seed: int, size=(50, 30)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / NAME
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vision_reference.py"), "model", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture(scope="module")
def reference(folder):
    """mlx-vlm's prompt ids and greedy tokens for an image, and the decoder."""
    from mlx_vlm.utils import load_image, load_model, load_processor

    model = load_model(folder)
    processor = load_processor(folder)

    def run(image):
        images = image if isinstance(image, list) else [image]
        content = [{"type": "text", "text": PROMPT}] + [{"type": "image"}] * len(images)
        messages = [{"role": "user", "content": content}]
        text = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(
            text=text,
            images=[load_image(data_url(i)) for i in images],
            add_special_tokens=False,
            return_tensors="np",
        )
        ids = mx.array(inputs["input_ids"])
        cache = model.language_model.make_cache()
        embedded = model.get_input_embeddings(ids, mx.array(inputs["pixel_values"]), mask=mx.ones(ids.shape))
        logits = model.language_model(ids, inputs_embeds=embedded.inputs_embeds, cache=cache).logits
        tokens = []
        for _ in range(MAX_TOKENS):
            token = int(mx.argmax(logits[0, -1]).item())
            tokens.append(token)
            logits = model.language_model(mx.array([[token]]), cache=cache).logits
        return [int(t) for t in inputs["input_ids"][0]], tokens

    return run, processor.tokenizer


@pytest.fixture(scope="module")
def server(folder):
    with serve([folder, ROOT / ".deps" / "models" / MODEL]) as running:
        yield running


def expected_text(tokens, tokenizer):
    """What Orchard should answer: the greedy tokens up to an end-of-turn,
    as text without the one leading space that a streaming detokenizer
    drops (mlx-lm's and mlx-vlm's do, and so does Orchard's)."""
    kept = []
    for token in tokens:
        if token in EOS:
            break
        kept.append(token)
    text = tokenizer.decode(kept)
    return text.removeprefix(" "), len(kept)


def ask(client, url):
    """A chat completion of the prompt and the image at `url`, greedy."""
    return client.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": PROMPT},
            {"type": "image_url", "image_url": {"url": url}},
        ]}],
        max_tokens=MAX_TOKENS,
        temperature=0,
    )


def test_an_image_as_a_data_url_answers_as_mlx_vlm(server, reference):
    run, tokenizer = reference
    image = png(1)
    ids, greedy = run(image)
    prompt_tokens = len(ids)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key)
    reply = ask(client, data_url(image))
    text, count = expected_text(greedy, tokenizer)
    assert reply.choices[0].message.content == text
    assert reply.usage.completion_tokens == count
    # The image counts as its tokens (16 for this model), once.
    assert reply.usage.prompt_tokens == prompt_tokens

    # The same image after the same text: the prompt cache holds it.
    again = ask(client, data_url(image))
    assert again.choices[0].message.content == text
    assert again.usage.prompt_tokens_details.cached_tokens == prompt_tokens - 1


def test_an_anthropic_base64_block_answers_as_mlx_vlm(server, reference):
    run, tokenizer = reference
    image = png(2)
    ids, greedy = run(image)
    prompt_tokens = len(ids)
    client = anthropic.Anthropic(base_url=server.base_url, api_key=server.key)
    messages = [{
        "role": "user",
        "content": [
            {"type": "text", "text": PROMPT},
            {"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": base64.b64encode(image).decode(),
            }},
        ],
    }]
    reply = client.messages.create(
        model=NAME, max_tokens=MAX_TOKENS, extra_body={"temperature": 0}, messages=messages
    )
    text, count = expected_text(greedy, tokenizer)
    assert "".join(block.text for block in reply.content if block.type == "text") == text
    assert reply.usage.output_tokens == count
    # Anthropic's input_tokens leaves out what the cache read. A cache from
    # another image's request may give the text before the image, never more.
    cached = reply.usage.cache_read_input_tokens or 0
    assert reply.usage.input_tokens + cached == prompt_tokens
    assert cached in (0, ids.index(IMAGE_TOKEN)), cached
    # Counting gives the same, the image as its tokens.
    assert client.messages.count_tokens(model=NAME, messages=messages).input_tokens == prompt_tokens


def test_an_input_image_of_the_responses_api_answers_as_mlx_vlm(server, reference):
    run, tokenizer = reference
    image = png(6)
    ids, greedy = run(image)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key)
    response = client.responses.create(
        model=NAME,
        input=[{"role": "user", "content": [
            {"type": "input_text", "text": PROMPT},
            {"type": "input_image", "image_url": data_url(image)},
        ]}],
        max_output_tokens=MAX_TOKENS,
        temperature=0,
        store=False,
    )
    text, count = expected_text(greedy, tokenizer)
    assert response.output_text == text
    assert response.usage.input_tokens == len(ids)
    assert response.usage.output_tokens == count


def test_a_video_part_is_its_frames_as_images(server, reference):
    """Orchard's extension part: frames and their rate; Gemma 3 reads the
    frames as images, in order."""
    run, tokenizer = reference
    frames = [png(7), png(8)]
    ids, greedy = run(frames)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key)

    def ask_video(video):
        return client.chat.completions.create(
            model=NAME,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": PROMPT},
                {"type": "video", "video": video},
            ]}],
            max_tokens=MAX_TOKENS,
            temperature=0,
        )

    reply = ask_video({"frames": [data_url(f) for f in frames], "fps": 2})
    text, count = expected_text(greedy, tokenizer)
    assert reply.choices[0].message.content == text
    assert reply.usage.prompt_tokens == len(ids)
    for video, param in [
        ({"frames": []}, "messages[0].content[1].video.frames"),
        ({"frames": [data_url(frames[0])], "fps": 0}, "messages[0].content[1].video.fps"),
        ({"frames": [data_url(frames[0])] * 65}, "messages[0].content[1].video.frames"),
        ({"frames": ["data:image/png;base64,AAAA"]}, "messages[0].content[1].video.frames[0]"),
    ]:
        with pytest.raises(openai.BadRequestError) as caught:
            ask_video(video)
        assert caught.value.body["param"] == param, caught.value.body


def test_images_a_model_cannot_read_are_refused_with_what_to_do(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key)
    image_part = {"type": "image_url", "image_url": {"url": data_url(png(3))}}

    def refused(model, part):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}, part]}],
                max_tokens=2,
            )
        return caught.value.body

    error = refused(MODEL, image_part)
    assert error["param"] == "messages[0].content[1].image_url"
    assert "does not take images" in error["message"] and "gemma-3" in error["message"]

    broken = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"not a png").decode()}}
    error = refused(NAME, broken)
    assert error["param"] == "messages[0].content[1].image_url"
    assert "not a PNG, JPEG, WebP or GIF" in error["message"]

    error = refused(NAME, {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}})
    assert "refused" in error["message"]

    client_a = anthropic.Anthropic(base_url=server.base_url, api_key=server.key)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client_a.messages.create(
            model=MODEL,
            max_tokens=2,
            messages=[{"role": "user", "content": [{"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": base64.b64encode(png(4)).decode()}}]}],
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "does not take images" in caught.value.body["error"]["message"]


def test_the_model_list_says_which_models_take_images(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key)
    listed = {m.id: m.model_extra for m in client.models.list().data}
    assert listed[NAME]["vision"] is True
    assert listed[MODEL]["vision"] is False


@pytest.fixture(scope="module")
def image_site():
    """A local web server with one PNG at /cat.png; other paths are 404."""
    import http.server
    import threading

    image = png(5)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/cat.png":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(image)))
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{site.server_address[1]}", image
    site.shutdown()


def test_an_image_at_an_http_url_is_fetched_unless_the_setting_says_not(server, reference, image_site):
    import sqlite3

    run, tokenizer = reference
    base, image = image_site
    ids, greedy = run(image)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key)

    reply = ask(client, base + "/cat.png")
    text, count = expected_text(greedy, tokenizer)
    assert reply.choices[0].message.content == text
    assert reply.usage.prompt_tokens == len(ids)

    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, base + "/missing.png")
    assert caught.value.body["param"] == "messages[0].content[1].image_url"
    assert "404" in caught.value.body["message"]

    # Anthropic's url source goes the same way.
    client_a = anthropic.Anthropic(base_url=server.base_url, api_key=server.key)
    answer = client_a.messages.create(
        model=NAME, max_tokens=MAX_TOKENS, extra_body={"temperature": 0},
        messages=[{"role": "user", "content": [
            {"type": "text", "text": PROMPT},
            {"type": "image", "source": {"type": "url", "url": base + "/cat.png"}},
        ]}],
    )
    assert "".join(block.text for block in answer.content if block.type == "text") == text

    # The setting is read per request.
    with sqlite3.connect(f"{server.home}/orchard.db") as db:
        db.execute("INSERT INTO settings (key, value) VALUES ('fetch_image_urls', 'false')")
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client, base + "/cat.png")
        assert "fetch_image_urls" in caught.value.body["message"]
    finally:
        with sqlite3.connect(f"{server.home}/orchard.db") as db:
            db.execute("DELETE FROM settings WHERE key = 'fetch_image_urls'")
