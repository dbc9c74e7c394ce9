"""Cost of serving: API overhead over a direct call, throughput, payload sizes, PNG drawing time.

Run: ``python bench/server.py`` (loads the default model; about two minutes on 2 CPU cores).
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from whyllm.methods.registry import get_analysis
from whyllm.model.tiny import tiny_model
from whyllm.render.plot import save_png
from whyllm.server import create_app, running

IOI = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
TOKEN = "bench-token-0123456789"


def median_ms(fn, n: int = 10) -> float:
    fn()  # warm up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def overhead(model) -> None:
    body = {"prompt": IOI, "top_k": 10}
    def call():
        return get_analysis("predict")(model, IOI, top_k=10).to_dict()

    with ThreadPoolExecutor(1) as thread:  # the server computes on a worker thread: compare like with like
        direct = thread.submit(median_ms, call).result()
    with running(create_app(model, token=TOKEN)) as url, httpx.Client(
            base_url=url.split("/?")[0], headers={"x-whyllm-token": TOKEN}, timeout=600) as c:
        served = median_ms(lambda: c.post("/api/predict", json=body).raise_for_status())
    print(f"predict on {model.name}: direct {direct:.1f} ms, through the API {served:.1f} ms "
          f"(+{served - direct:.1f} ms)")


def throughput(model, clients: int, requests: int = 40) -> None:
    app = create_app(model, token=TOKEN, queue_size=64)
    with running(app) as url:
        base = url.split("/?")[0]

        def client(i: int) -> list[int]:
            with httpx.Client(base_url=base, headers={"x-whyllm-token": TOKEN}, timeout=600) as c:
                return [c.post("/api/predict", json={"prompt": f"{IOI} {i}", "top_k": 5}).status_code
                        for _ in range(requests // clients)]

        t = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            codes = [code for batch in pool.map(client, range(clients)) for code in batch]
        dt = time.perf_counter() - t
    print(f"{model.name}: {clients} client(s), {len(codes)} predict requests: {len(codes) / dt:.0f} req/s "
          f"({codes.count(200)} answered 200)")


def payloads(model) -> None:
    with running(create_app(model, token=TOKEN)) as url, httpx.Client(
            base_url=url.split("/?")[0], headers={"x-whyllm-token": TOKEN}, timeout=600) as c:
        for name, body in [
            ("predict", {"prompt": IOI}), ("generate", {"prompt": IOI, "max_new_tokens": 16, "seed": 0}),
            ("explain", {"prompt": IOI, "target": " Mary", "method": "occlusion"}),
            ("lens", {"prompt": IOI, "target": " Mary"}), ("components", {"prompt": IOI}),
            ("attention", {"prompt": IOI}), ("patch", {"clean": IOI, "corrupted": CORRUPTED}),
        ]:
            t = time.perf_counter()
            r = c.post(f"/api/{name}", json=body)
            r.raise_for_status()
            print(f"  {name:<10} {len(r.content) / 1024:7.1f} KiB  {time.perf_counter() - t:6.2f} s")


def pngs(model, folder: str = "/tmp") -> None:
    calls = {"predict": ("predict", {}), "generate": ("generate", {"max_new_tokens": 24, "seed": 0}),
             "lens": ("lens", {}), "components": ("components", {}),
             "attention": ("attention", {"layers": [0]}), "explain": ("explain", {"method": "occlusion"})}
    for kind, (name, kw) in calls.items():
        result, path = get_analysis(name)(model, IOI, **kw), f"{folder}/whyllm-bench-{kind}.png"
        ms = median_ms(lambda r=result, p=path: save_png(r, p), n=3)
        print(f"  save_png {kind:<10} {ms:6.0f} ms")


def main() -> None:
    from whyllm import load_model

    tiny = tiny_model("llama")
    throughput(tiny, 1)
    throughput(tiny, 8)
    print("PNG drawing (tiny model results):")
    pngs(tiny)
    gemma = load_model(progress=False)
    overhead(gemma)
    print(f"payloads on {gemma.name} (IOI prompt, {gemma.encode(IOI).shape[1]} tokens):")
    payloads(gemma)


if __name__ == "__main__":
    main()
