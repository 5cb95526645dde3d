"""Run with roc-validator's own Python: put the RO-Crate 1.1 JSON-LD context into the validator's
HTTP cache (requests_cache, SQLite), from the copy the rocrate package (0.9.0) bundles, so that
`rocrate-validator validate --offline` needs no network.

    python seed_validator_cache.py CACHE_PATH
"""

import importlib.util
import io
import sys
from pathlib import Path

import requests
from requests_cache import CachedSession
from urllib3 import HTTPResponse

CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"


def main(cache: str) -> None:
    spec = importlib.util.find_spec("rocrate")  # found, not imported: rocrate is installed without its dependencies
    context = Path(spec.submodule_search_locations[0]) / "data" / "ro-crate.jsonld"
    content = context.read_bytes()
    if CONTEXT_URL.encode() not in content[:300]:
        raise SystemExit(f"{context}: not the RO-Crate 1.1 context")
    session = CachedSession(cache_name=cache, backend="sqlite", expire_after=-1, allowable_methods=("GET",),
                            allowable_codes=(200, 302, 404))
    response = requests.Response()
    response.status_code, response.url, response._content, response.encoding = 200, CONTEXT_URL, content, "utf-8"
    response.headers["Content-Type"] = "application/ld+json"
    response.request = requests.Request("GET", CONTEXT_URL).prepare()
    response.raw = HTTPResponse(body=io.BytesIO(content), headers={"Content-Type": "application/ld+json"}, status=200,
                                preload_content=False)
    response.raw._request_url = CONTEXT_URL
    session.cache.save_response(response)


if __name__ == "__main__":
    main(sys.argv[1])
