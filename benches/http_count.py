"""Times exact counts by a keyword filter over REST, one field at a time: the first request and
the median of the next ones, over one keep-alive connection.

Meant for the store `benches/http_filtered.py` loads (four seeded keyword fields, "in" on
50%, 10%, 1% and 0.1% of the points), with or without its keyword indexes:

    python3 benches/http_count.py --url http://127.0.0.1:6333 --collection filtered
"""
import argparse
import http.client
import json
import statistics
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:6333")
    ap.add_argument("--collection", default="filtered")
    ap.add_argument("--fields", default="s5000,s1000,s100,s10",
                    help="keyword fields, each counted where it is \"in\"")
    ap.add_argument("--repeat", type=int, default=20, help="timed requests after the first")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    url = urllib.parse.urlparse(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80)
    path = f"/collections/{args.collection}/points/count"
    for field in args.fields.split(","):
        body = json.dumps({"filter": {"must": [{"key": field, "match": {"value": "in"}}]},
                           "exact": True})
        times, count = [], None
        for _ in range(args.repeat + 1):
            t = time.perf_counter()
            conn.request("POST", path, body, {"content-type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
            times.append((time.perf_counter() - t) * 1000)
            if response.status != 200:
                raise SystemExit(f"{field}: HTTP {response.status}: {raw[:500]!r}")
            count = json.loads(raw)["result"]["count"]
        print(f"{field}: count {count}, first {times[0]:.1f} ms, "
              f"median of the next {args.repeat} {statistics.median(times[1:]):.2f} ms", flush=True)


if __name__ == "__main__":
    main()
