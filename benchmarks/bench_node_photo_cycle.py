"""One node's full cycle on photo-sized images against the sum of its parts (issue 17).

The web: ``--hosts`` loopback hosts (127.0.1.N, default 20) x ``--pages`` pages (default 25),
each page with 2 distinct generated photos (libra.demo.imagegen scenes upscaled with film
grain: JPEG of 1.2-2.8 MP and ~350-770 KB, every 10th image WebP, every 20th a 0.8 MP PNG of
~1.7 MB). The bytes are made at start-up by the two web server processes and served from their
memory: no image touches the disk. A list of ``--decoys`` random entries plus the MD5 or PDQ of
a dozen of the web's images, so that the cycle finds matches. A synthetic GeoIP (one hoster per
host) so that attribution does its real lookups.

One real `libra function serve` (lab mode, signed requests, decode worker processes) serves,
after a warm-up batch:
- the full cycle: ``node.cycle.run`` as `libra node crawl` runs it (crawler -> function ->
  match -> attribute -> record into a fresh SQLite database, dispatch defaults: 8 calls in
  flight, batches of 32), in its own process;
- the parts alone, on the same web and images, in one other process: crawl only (the crawler,
  no function), function only (the crawl's image URLs by batch of 32 through FunctionClient),
  match only (MatchIndex.match_many over the function's results), attribute only (the
  Attributor's lookups the cycle makes: one per page, one per hashed image) and record only
  (node.cycle.run replaying the recorded events, with a function answering from memory, an
  index answering the precomputed matches and an attributor answering the precomputed places:
  the recorder's SQLite writes, plus the cycle's queues, which are thus counted as a part).

CPU is user + system time: the node's from time.process_time() around the measured step (its
imports and set-up excluded alike in both processes), the function's from /proc (the server
and its decode workers, live and reaped) before and after. The full cycle's images analysed
per CPU-second is compared with 1 / (sum over the parts of CPU-seconds per image): a ratio
near 1.0 means the pipeline adds no overhead of its own.

    .venv/bin/python benchmarks/bench_node_photo_cycle.py        # 20 x 25 pages, ~2-6 min by load
    .venv/bin/python benchmarks/bench_node_photo_cycle.py --hosts 4 --pages 5   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
from bench_crawler import ROOT, free_port, host_ip
from bench_function_batch import tree_cpu

KEY_SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # a fixed benchmark-only key
CONCURRENCY = 8  # the node's defaults: crawl.concurrency and dispatch.concurrency
BATCH = 32  # dispatch.batch_size's default
WARM_UP_IMAGES = 64
MATCHED_IMAGES = 12  # images of the web whose MD5 (even) or PDQ (odd) is on the list
SEED_BASE = 170_000  # imagegen seeds of this benchmark's pictures

# ----------------------------------------------------------------------------- the pictures

JPEG_SIZES = ((1280, 960), (1600, 1200), (2048, 1365))
PNG_SIZE = (1024, 768)
FORMATS = {
    "jpg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
    "png": ("PNG", "image/png"),
}
GRAIN = 14  # +- levels of film grain: what gives a generated scene a photo's JPEG size


def image_number(host: int, page: int, slot: int, pages: int) -> int:
    """The web-wide number of picture ``slot`` (0 or 1) of ``page`` on ``host``."""
    return (host * pages + page) * 2 + slot


def image_kind(number: int) -> tuple[str, tuple[int, int]]:
    """File extension and size of picture ``number``: 5 % PNG, 10 % WebP, the rest JPEG."""
    if number % 20 == 7:
        return "png", PNG_SIZE
    if number % 10 == 3:
        return "webp", JPEG_SIZES[number % 3]
    return "jpg", JPEG_SIZES[number % 3]


def image_path(page: int, slot: int, number: int) -> str:
    return f"/img/{page}-{slot}.{image_kind(number)[0]}"


def matched_numbers(total_images: int) -> list[int]:
    """The pictures the list holds: spread over the web, at most MATCHED_IMAGES."""
    step = max(1, total_images // MATCHED_IMAGES)
    return list(range(step // 2, total_images, step))[:MATCHED_IMAGES]


class PhotoMaker:
    """Photo-like bytes from a picture number. An imagegen scene (distinct low frequencies per
    seed, so the PDQ of two pictures stay far apart) drawn at a quarter size, upscaled, plus
    grain cut from one shared field at a per-picture offset: ~40 ms a picture, where imagegen
    at full size plus per-picture noise costs ~5 times that."""

    def __init__(self) -> None:
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(SEED_BASE)
        rows = max(h for _, h in JPEG_SIZES) + 64
        cols = max(w for w, _ in JPEG_SIZES) + 64
        levels = 128 + rng.integers(-GRAIN, GRAIN + 1, size=(rows, cols, 3))
        self._grain = Image.fromarray(levels.astype(np.uint8), "RGB")  # 128: no change

    def make(self, number: int) -> bytes:
        from PIL import Image, ImageChops

        from libra.demo.imagegen import generate_image

        ext, (width, height) = image_kind(number)
        scene = generate_image(SEED_BASE + number, width // 4, height // 4)
        scene = scene.resize((width, height), Image.Resampling.BILINEAR)
        dy, dx = number % 61, (number * 7) % 64
        grain = self._grain.crop((dx, dy, dx + width, dy + height))
        photo = ImageChops.add(scene, grain, 1.0, -128)  # scene + grain - 128, clipped
        out = io.BytesIO()
        if ext == "jpg":
            photo.save(out, "JPEG", quality=90)
        elif ext == "webp":
            photo.save(out, "WEBP", quality=80, method=0)
        else:
            photo.save(out, "PNG", compress_level=1)
        return out.getvalue()


# ----------------------------------------------------------------------------- the web


def page_body(page: int, pages: int, pictures: Sequence[str]) -> bytes:
    links = {page + 1, (page * 7 + 3) % pages, (page * 13 + 5) % pages} - {page}
    anchors = "".join(
        f'<li><a href="/p{m}.html">page {m}</a></li>' for m in sorted(links) if m < pages
    )
    images = "".join(f'<img src="{src}" alt="photo">' for src in pictures)
    text = "<p>" + ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 10) + "</p>"
    return (
        f"<!doctype html><html><head><title>page {page}</title></head><body>"
        f"<h1>Page {page}</h1>{images}<ul>{anchors}</ul>{text}</body></html>"
    ).encode()


def _site(host: int, pages: int, maker: PhotoMaker) -> dict[str, tuple[bytes, bytes]]:
    """Every path of one host -> (content type, body): pages, pictures, robots.txt."""
    site = {"/robots.txt": (b"text/plain", b"User-agent: *\nDisallow: /private/\n")}
    for page in range(pages):
        paths = []
        for slot in (0, 1):
            number = image_number(host, page, slot, pages)
            path = image_path(page, slot, number)
            site[path] = (FORMATS[image_kind(number)[0]][1].encode(), maker.make(number))
            paths.append(path)
        site[f"/p{page}.html"] = (b"text/html; charset=utf-8", page_body(page, pages, paths))
    return site


async def _serve(sites: dict[str, dict[str, tuple[bytes, bytes]]], port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        site = sites[writer.get_extra_info("sockname")[0]]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode().split("?", 1)[0]  # any query: same file
                status = b"200 OK" if path in site else b"404 Not Found"
                ctype, body = site.get(path, (b"text/html", b"<html>404</html>"))
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype
                    + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(handle, ip, port, backlog=512) for ip in sites]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def _web_process(hosts: list[int], pages: int, port: int, ready: Event) -> None:
    maker = PhotoMaker()
    sites = {host_ip(h): _site(h, pages, maker) for h in hosts}
    ready.set()
    asyncio.run(_serve(sites, port))


def start_web(hosts: int, pages: int, port: int) -> list[multiprocessing.Process]:
    """The web in two processes, each making its hosts' pictures; returns once all are made."""
    processes = []
    events = []
    for part in range(2):
        ready = multiprocessing.Event()
        process = multiprocessing.Process(
            target=_web_process, args=(list(range(part, hosts, 2)), pages, port, ready), daemon=True
        )
        process.start()
        processes.append(process)
        events.append(ready)
    for ready in events:
        if not ready.wait(timeout=600):
            raise SystemExit("the web did not make its pictures in time")
    time.sleep(0.3)  # the listening sockets open right after the pictures are made
    return processes


# ----------------------------------------------------------------------------- set-up shared


@dataclass(frozen=True)
class Setup:
    """What the node-side processes share: the web, the function, the list, the GeoIP."""

    hosts: int
    pages: int
    port: int
    function_url: str
    function_pid: int
    geo_dir: Path
    decoys: int
    listed: list[tuple[str, str]]  # (family, value) of the web's pictures on the list

    @property
    def seeds(self) -> list[str]:
        return [f"http://{host_ip(n)}:{self.port}/p0.html" for n in range(self.hosts)]

    def entries(self) -> list[tuple[str, str]]:
        """The list: random decoys (never near a picture) and the listed pictures."""
        import random

        rng = random.Random(SEED_BASE)
        out: list[tuple[str, str]] = []
        for n in range(self.decoys):
            family, bits = ("pdq", 256) if n % 2 else ("md5", 128)
            out.append((family, f"{rng.getrandbits(bits):0{bits // 4}x}"))
        return out + self.listed


def node_database(setup: Setup, path: Path) -> tuple[Any, Any]:
    """A fresh node database holding the list (imported as `libra node list import` does) and
    the match index built from it, as a crawl loads it."""
    from node.db import make_engine
    from node.lists.base import ImportedRecord
    from node.lists.store import import_records
    from node.matching.matcher import MatchIndex
    from protocol.hashes import HashFamily

    engine = make_engine(f"sqlite:///{path}")
    records = [
        ImportedRecord(HashFamily(family), value, line)
        for line, (family, value) in enumerate(setup.entries(), start=1)
    ]
    import_records(engine, records, source="bench", version="1", format_name="plain")
    return engine, MatchIndex.from_db(engine)


def pdq_hex(data: bytes) -> str:
    """PDQ of a picture as the function computes it (RGB, thumbnailed to 512 px)."""
    import numpy as np
    import pdqhash
    from PIL import Image

    from libra.demo.imagegen import PDQ_REDUCE_TO

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    rgb.thumbnail(PDQ_REDUCE_TO)
    vector, _quality = pdqhash.compute(np.asarray(rgb))
    return f"{int(''.join(str(int(bit)) for bit in vector), 2):064x}"


def listed_hashes(hosts: int, pages: int) -> list[tuple[str, str]]:
    """MD5 (even) or PDQ (odd) of the matched pictures, made again from their numbers."""
    maker = PhotoMaker()
    out = []
    for n, number in enumerate(matched_numbers(hosts * pages * 2)):
        data = maker.make(number)
        if n % 2 == 0:
            out.append(("md5", hashlib.md5(data, usedforsecurity=False).hexdigest()))
        else:
            out.append(("pdq", pdq_hex(data)))
    return out


def write_geoip(hosts: int, directory: Path) -> tuple[Path, Path]:
    """Country and ASN databases placing host N at one of 4 synthetic hosters."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    country = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    for n in range(hosts):
        network = IPSet([f"{host_ip(n)}/32"])
        country.insert_network(network, {"country": {"iso_code": ("DE", "FR", "NL", "SE")[n % 4]}})
        asn.insert_network(
            network,
            {
                "autonomous_system_number": 64500 + n % 4,
                "autonomous_system_organization": f"Hoster {n % 4}",
            },
        )
    paths = directory / "country.mmdb", directory / "asn.mmdb"
    country.to_db_file(str(paths[0]))
    asn.to_db_file(str(paths[1]))
    return paths


def _signer() -> Any:
    from protocol.keys import NodeKey
    from protocol.request_auth import RequestSigner

    return RequestSigner("bench", NodeKey.from_seed_b64(KEY_SEED).signing_key)


def _limits(setup: Setup) -> Any:
    from node.crawl.crawler import CrawlLimits

    # The node's defaults but for the budget and depth, which must cover the whole web.
    return CrawlLimits(max_pages=setup.hosts * setup.pages + 100, max_depth=10_000, sitemaps=False)


def _web_client(setup: Setup) -> httpx.AsyncClient:
    from node.net import make_client
    from protocol.lab import LabNetwork

    lab = LabNetwork(allow_ranges=["127.0.0.0/8"], allow_ports=[setup.port])
    return make_client(lab, timeout=30, user_agent=_limits(setup).user_agent, max_connections=16)


class _Clock:
    """CPU and wall of one measured step: the node's (this process) and the function's."""

    def __init__(self, function_pid: int) -> None:
        self._pid = function_pid
        self._function = tree_cpu(function_pid)
        self._node = time.process_time()
        self._wall = time.perf_counter()

    def stop(self, **counts: Any) -> dict[str, Any]:
        return {
            "wall_s": time.perf_counter() - self._wall,
            "node_cpu_s": time.process_time() - self._node,
            "function_cpu_s": tree_cpu(self._pid) - self._function,
            **counts,
        }


# ----------------------------------------------------------------------------- the full cycle


async def full_cycle(setup: Setup) -> dict[str, Any]:
    from node.attribution.attributor import Attributor
    from node.crawl.crawler import Crawler, seeds_run_key
    from node.crawl.frontier.sqlite import SqliteFrontier
    from node.cycle import run
    from node.dispatch import FunctionClient

    with tempfile.TemporaryDirectory() as tmp:
        engine, index = node_database(setup, Path(tmp) / "node.sqlite3")
        frontier = SqliteFrontier(Path(tmp) / "node.sqlite3")  # the node's own file, as default
        function = FunctionClient(
            setup.function_url, auth=_signer(), concurrency=CONCURRENCY, batch_size=BATCH
        )
        async with _web_client(setup) as web, function:
            with Attributor(setup.geo_dir / "country.mmdb", setup.geo_dir / "asn.mmdb") as where:
                clock = _Clock(setup.function_pid)
                summary = await run(
                    engine=engine,
                    crawler=Crawler(web, _limits(setup), frontier=frontier),
                    function=function,
                    index=index,
                    attributor=where,
                    seeds=setup.seeds,
                    concurrency=CONCURRENCY,
                    batch_size=BATCH,
                    run_key=seeds_run_key(setup.seeds),  # as `libra node crawl` passes it
                )
                result = clock.stop(
                    pages=summary.pages_fetched,
                    images=summary.images_hashed,
                    matches=summary.matches,
                    failures=dict(summary.image_failures),
                )
        frontier.close()
        engine.dispose()
    return result


# ----------------------------------------------------------------------------- the parts alone


class _Replay:
    """A crawler that yields the events a real crawl yielded, in the same order."""

    def __init__(self, events: Sequence[Any]) -> None:
        self._events = events

    async def crawl(self, seeds: list[str]) -> AsyncIterator[Any]:
        for event in self._events:
            yield event


class _Answers:
    """A function client answering what the function answered, from memory."""

    def __init__(self, outcomes: dict[str, Any]) -> None:
        self._outcomes = outcomes

    async def analyze(self, url: str, *, dihedral: bool = False) -> Any:
        return self._outcomes[url]

    async def analyze_batch(self, urls: Sequence[str], *, dihedral: bool = False) -> list[Any]:
        return [self._outcomes[url] for url in urls]


def _known_matches(matches: dict[str, Any]) -> Any:
    """A MatchIndex answering the matches found by the match step (keyed by SHA-256)."""
    from node.matching.matcher import MatchIndex
    from protocol.models import ImageHashes

    class KnownMatches(MatchIndex):
        def match_many(self, images: Sequence[ImageHashes]) -> list[list[Any]]:
            return [matches.get(hashes.sha256, []) for hashes in images]

    return KnownMatches()


def _known_places(
    country: Path, asn: Path, places: dict[tuple[str | None, str | None], Any]
) -> Any:
    """An Attributor (same databases, so the same sources()) answering the places found by the
    attribute step."""
    from node.attribution.attributor import Attribution, Attributor

    class KnownPlaces(Attributor):
        def lookup(self, ip: str | None, domain: str | None = None) -> Attribution:
            found = places.get((ip, domain))
            return found if found is not None else super().lookup(ip, domain)

    return KnownPlaces(country, asn)


async def _crawl_only(setup: Setup, tmp: Path) -> tuple[list[Any], dict[str, Any]]:
    """The crawler alone: its events, nothing done with them."""
    from node.crawl.crawler import Crawler, ImageFound, PageFetched
    from node.crawl.frontier.sqlite import SqliteFrontier

    events: list[Any] = []
    frontier = SqliteFrontier(tmp / "frontier.sqlite3")
    async with _web_client(setup) as web:
        crawler = Crawler(web, _limits(setup), frontier=frontier)
        clock = _Clock(setup.function_pid)
        async for event in crawler.crawl(setup.seeds):
            events.append(event)
        pages = sum(isinstance(e, PageFetched) for e in events)
        images = len({e.url for e in events if isinstance(e, ImageFound)})
        result = clock.stop(pages=pages, images=images)
    frontier.close()
    return events, result


async def _function_only(setup: Setup, urls: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The crawl's image URLs by batch through the node's client, as many calls in flight as
    the cycle's dispatchers make (the client bounds the batches in flight itself)."""
    from node.dispatch import FunctionClient
    from protocol.models import HashResult

    client = FunctionClient(
        setup.function_url, auth=_signer(), concurrency=CONCURRENCY, batch_size=BATCH
    )
    async with client:
        clock = _Clock(setup.function_pid)
        chunks = [urls[i : i + BATCH] for i in range(0, len(urls), BATCH)]
        answers = await asyncio.gather(*(client.analyze_batch(chunk) for chunk in chunks))
        outcomes = {
            url: answer
            for chunk, chunk_answers in zip(chunks, answers, strict=True)
            for url, answer in zip(chunk, chunk_answers, strict=True)
        }
        hashed = sum(isinstance(a, HashResult) for a in outcomes.values())
        result = clock.stop(images=hashed, failures=len(outcomes) - hashed)
    return outcomes, result


def _match_only(setup: Setup, index: Any, results: list[Any]) -> tuple[dict[str, Any], Any]:
    """MatchIndex.match_many over the results, in the recorder's largest batches."""
    from node import cycle

    size = getattr(cycle, "MATCH_BATCH", 256)
    found: dict[str, Any] = {}
    clock = _Clock(setup.function_pid)
    for start in range(0, len(results), size):
        batch = [r.hashes for r in results[start : start + size]]
        for hashes, matches in zip(batch, index.match_many(batch), strict=True):
            found[hashes.sha256] = matches
    result = clock.stop(images=len(results), matches=sum(bool(m) for m in found.values()))
    return found, result


def _attribute_only(
    setup: Setup, events: list[Any], results: list[Any]
) -> tuple[dict[tuple[str | None, str | None], Any], dict[str, Any]]:
    """The Attributor lookups the cycle makes: one per fetched page, one per hashed image."""
    from node.attribution.attributor import Attributor, host_of
    from node.crawl.crawler import PageFetched

    places: dict[tuple[str | None, str | None], Any] = {}
    pages = [e for e in events if isinstance(e, PageFetched)]
    with Attributor(setup.geo_dir / "country.mmdb", setup.geo_dir / "asn.mmdb") as where:
        clock = _Clock(setup.function_pid)
        key: tuple[str | None, str | None]
        for page in pages:
            key = (page.server_ip, page.served_host or page.host)
            places[key] = where.lookup(*key)
        for hashed in results:
            key = (hashed.server_ip, host_of(hashed.final_url))
            places[key] = where.lookup(*key)
        result = clock.stop(lookups=len(pages) + len(results))
    return places, result


async def _record_only(
    setup: Setup,
    engine: Any,
    events: list[Any],
    outcomes: dict[str, Any],
    matches: dict[str, Any],
    places: dict[tuple[str | None, str | None], Any],
) -> dict[str, Any]:
    """node.cycle.run over the recorded events into a fresh database, every other part
    answering from memory: what is left is the recorder (and the cycle's queues)."""
    from node.crawl.crawler import seeds_run_key
    from node.cycle import run

    country, asn = setup.geo_dir / "country.mmdb", setup.geo_dir / "asn.mmdb"
    with _known_places(country, asn, places) as where:
        clock = _Clock(setup.function_pid)
        summary = await run(
            engine=engine,
            crawler=_Replay(events),
            function=_Answers(outcomes),
            index=_known_matches(matches),
            attributor=where,
            seeds=setup.seeds,
            concurrency=CONCURRENCY,
            batch_size=BATCH,
            run_key=seeds_run_key(setup.seeds),
        )
        result = clock.stop(images=summary.images_hashed, matches=summary.matches)
    return result


async def parts(setup: Setup) -> dict[str, Any]:
    """Each part alone, in the cycle's order, each fed what the part before it produced."""
    from protocol.models import HashResult

    with tempfile.TemporaryDirectory() as tmp:
        # The recorder's fresh database, with the list and its index, made before anything.
        engine, index = node_database(setup, Path(tmp) / "record.sqlite3")
        events, crawl = await _crawl_only(setup, Path(tmp))
        urls = list(dict.fromkeys(e.url for e in events if hasattr(e, "page_url")))
        outcomes, function = await _function_only(setup, urls)
        results = [r for r in outcomes.values() if isinstance(r, HashResult)]
        matches, match = _match_only(setup, index, results)
        places, attribute = _attribute_only(setup, events, results)
        record = await _record_only(setup, engine, events, outcomes, matches, places)
        engine.dispose()
    return {
        "crawl": crawl,
        "function": function,
        "match": match,
        "attribute": attribute,
        "record": record,
    }


# ----------------------------------------------------------------------------- the driver


def _start_function(port: int, web_port: int, directory: Path) -> subprocess.Popen[bytes]:
    """`libra function serve` in lab mode for the web's port (wait for it with _healthy)."""
    from protocol.keys import NodeKey

    lab = directory / "lab.toml"
    lab.write_text(f'allow_ranges = ["127.0.0.0/8"]\nallow_ports = [{web_port}]\n')
    key = NodeKey.from_seed_b64(KEY_SEED)
    env = {
        **os.environ,
        "LIBRA_FUNCTION_AUTHORIZED_KEYS": json.dumps({"bench": key.public_key_b64}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "libra", "function", "serve", "--lab", str(lab), "--host",
         "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    for _ in range(600):  # up to 60 s more once the pictures are made, on a loaded machine
        if proc.poll() is not None:
            raise SystemExit(f"the function exited ({proc.returncode})")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the function did not start")


async def _warm_up(setup: Setup, urls: list[str]) -> None:
    """Start the function's decode workers and fill its caches before anything is measured."""
    from node.dispatch import FunctionClient

    async with FunctionClient(setup.function_url, auth=_signer(), batch_size=BATCH) as client:
        await asyncio.gather(
            *(client.analyze_batch(urls[i : i + BATCH]) for i in range(0, len(urls), BATCH))
        )


def _role(role: str, setup: Setup) -> dict[str, Any]:
    """Run a role of this script in its own process; its JSON answer, with the process's whole
    CPU time (imports and set-up included) from os.wait4."""
    state = {**setup.__dict__, "geo_dir": str(setup.geo_dir)}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", role],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(state))
    proc.stdin.close()
    answer = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"the {role} process failed ({status})")
    result: dict[str, Any] = json.loads(answer.strip().splitlines()[-1])
    result["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


def rate(images: float, cpu_s: float) -> float:
    """Images per CPU-second (0 when nothing was measured)."""
    return images / cpu_s if cpu_s > 0 else 0.0


def table(cycle: dict[str, Any], parts_: dict[str, dict[str, Any]]) -> list[str]:
    """The markdown table: the full cycle, each part, their sum, and the ratio."""
    images = parts_["function"]["images"]  # every part's CPU is spread over these images
    lines = [
        "| step | images | wall s | node CPU s | function CPU s | CPU ms/image | images/CPU-s |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name: str, n: int, r: dict[str, Any]) -> None:
        cpu = r["node_cpu_s"] + r["function_cpu_s"]
        lines.append(
            f"| {name} | {n} | {r['wall_s']:.1f} | {r['node_cpu_s']:.2f} | "
            f"{r['function_cpu_s']:.2f} | {1000 * cpu / max(1, n):.2f} | {rate(n, cpu):.1f} |"
        )

    row("full cycle", cycle["images"], cycle)
    labels = {
        "crawl": "crawl only",
        "function": "function only (+ client)",
        "match": "match only",
        "attribute": "attribute only",
        "record": "record only (+ cycle queues)",
    }
    for key, label in labels.items():
        row(label, images, parts_[key])
    total = {
        k: sum(parts_[p][k] for p in labels) for k in ("wall_s", "node_cpu_s", "function_cpu_s")
    }
    row("sum of parts", images, total)
    full = rate(cycle["images"], cycle["node_cpu_s"] + cycle["function_cpu_s"])
    ideal = rate(images, total["node_cpu_s"] + total["function_cpu_s"])
    lines.append("")
    lines.append(
        f"full cycle {full:.1f} images/CPU-s vs 1 / (sum of the parts' CPU-s per image) "
        f"{ideal:.1f}: ratio {full / ideal if ideal else 0:.2f}"
    )
    node_cycle = 1000 * cycle["node_cpu_s"] / max(1, cycle["images"])
    node_parts = 1000 * total["node_cpu_s"] / max(1, images)
    lines.append(
        f"node side alone: cycle {node_cycle:.2f} CPU ms/image vs parts {node_parts:.2f}: "
        f"ratio {node_parts / node_cycle if node_cycle else 0:.2f}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20, help="loopback hosts (at most 254)")
    parser.add_argument("--pages", type=int, default=25, help="pages per host (2 photos each)")
    parser.add_argument("--decoys", type=int, default=10_000, help="random list entries")
    parser.add_argument(
        "--parts-first", action="store_true", help="measure the parts before the full cycle"
    )
    parser.add_argument("--role", default="driver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role != "driver":
        state = json.loads(sys.stdin.read())
        setup = Setup(**{**state, "geo_dir": Path(state["geo_dir"])})
        measured = full_cycle(setup) if args.role == "cycle" else parts(setup)
        print(json.dumps(asyncio.run(measured)))
        return
    if not (1 <= args.hosts <= 254 and args.pages >= 1 and args.decoys >= 0):
        raise SystemExit("--hosts must be 1-254, --pages at least 1, --decoys at least 0")

    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="libra-bench-photo-") as tmp:
        cycle, parts_result, listed, made = _measure(args, Path(tmp))
    print(
        f"synthetic web: {args.hosts} hosts x {args.pages} pages, {args.hosts * args.pages * 2} "
        f"photos (made in {made:.0f} s); list: {args.decoys} decoys + {listed} of the web's "
        f"pictures; order: {'parts, then cycle' if args.parts_first else 'cycle, then parts'}"
    )
    print()
    print("\n".join(table(cycle, parts_result)))
    print()
    print(
        f"full cycle: {cycle['pages']} pages, {cycle['matches']} matches, "
        f"failures {cycle['failures'] or 'none'}; parts: {parts_result['crawl']['pages']} pages, "
        f"{parts_result['match']['matches']} matches, "
        f"{parts_result['function']['failures']} images not hashed"
    )
    print(
        f"node process CPU incl. start-up: cycle {cycle['process_cpu_s']:.1f} s, "
        f"parts {parts_result['process_cpu_s']:.1f} s"
    )
    print(
        f"total time {time.perf_counter() - started:.0f} s; load average before "
        f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}; cpus={os.cpu_count()}"
    )


def _measure(
    args: argparse.Namespace, tmp: Path
) -> tuple[dict[str, Any], dict[str, Any], int, float]:
    """Web, function, warm-up, then the two measuring processes; (cycle, parts, pictures on
    the list, seconds the web took to make its pictures)."""
    port, fport = free_port(), free_port()
    write_geoip(args.hosts, tmp)
    function = _start_function(fport, port, tmp)  # starts while the pictures are made
    servers: list[multiprocessing.Process] = []
    try:
        made = time.perf_counter()
        servers = start_web(args.hosts, args.pages, port)
        made = time.perf_counter() - made
        _wait_healthy(function, fport)
        setup = Setup(
            hosts=args.hosts,
            pages=args.pages,
            port=port,
            function_url=f"http://127.0.0.1:{fport}",
            function_pid=function.pid,
            geo_dir=tmp,
            decoys=args.decoys,
            listed=listed_hashes(args.hosts, args.pages),
        )
        warm = [
            f"http://{host_ip(n % args.hosts)}:{port}"
            f"{image_path(0, 0, image_number(n % args.hosts, 0, 0, args.pages))}?warm{n}"
            for n in range(WARM_UP_IMAGES)
        ]
        asyncio.run(_warm_up(setup, warm))
        if args.parts_first:
            parts_result = _role("parts", setup)
            cycle = _role("cycle", setup)
        else:
            cycle = _role("cycle", setup)
            parts_result = _role("parts", setup)
    finally:
        function.terminate()
        function.wait(timeout=60)
        for server in servers:
            server.terminate()
    return cycle, parts_result, len(setup.listed), made


if __name__ == "__main__":
    main()
