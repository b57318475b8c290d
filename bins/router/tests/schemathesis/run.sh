#!/usr/bin/env bash
# Schema-driven fuzzing of the router's REST API with Schemathesis (PyPI), against Qdrant's
# openapi.json ($VR_OPENAPI, default ../shared/qdrant-api/openapi.json, else the copy beside
# the e2e suite, the same file) restricted to the endpoints the router serves
# (docs/reliability.md). CI runs it for 60 seconds. Schemathesis 4.32.5 sometimes stops an
# operation with an internal error of its own ("Inconsistent results" from Hypothesis while
# drawing examples): its exit status alone would fail CI for reasons outside this code, so the
# verdict comes from its JUnit report (a <failure> is a check our server failed; an <error>
# is the tool's, printed and not counted) and from the router's own log (any 5xx but 501).
#
#   bins/router/tests/schemathesis/run.sh [seconds]        (default 240)
#
# Starts the router ($VR_ROUTER_BIN, default target/release/router) on a scratch storage
# with a small collection `st` (every {collection_name} in the generated requests is `st`), runs Schemathesis with the response
# checks (schema, status code, content type), then counts the router's answers by status from
# its access log: any 5xx other than 501 (a feature not served, named in the message) fails.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
SECONDS_BUDGET="${1:-240}"
VENV="${VR_SCHEMATHESIS_VENV:-$PWD/data/st-venv}"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
WORK="$(mktemp -d)"
PORT="${VR_SCHEMATHESIS_PORT:-6390}"
BIN="${VR_ROUTER_BIN:-target/release/router}"
SPEC="${VR_OPENAPI:-../shared/qdrant-api/openapi.json}"
[ -f "$SPEC" ] || SPEC=bins/router/tests/e2e/openapi.json
"$BIN" --host 127.0.0.1 --http-port "$PORT" --grpc-port 0 --storage-path "$WORK/store" \
  --snapshots-path "$WORK/snaps" --log-level info > "$WORK/router.log" 2>&1 &
ROUTER=$!
trap 'kill $ROUTER 2>/dev/null; wait $ROUTER 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 0.3
if ! kill -0 "$ROUTER" 2>/dev/null; then
  echo "the router did not start:"; cat "$WORK/router.log"; exit 1
fi
# The collection every generated request names, with two points (no curl on a bare machine).
"$VENV/bin/python" - "$PORT" <<'PY'
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status
for _ in range(100):
    try:
        call("GET", "/readyz")
        break
    except OSError:
        time.sleep(0.1)
call("PUT", "/collections/st", {"vectors": {"size": 4, "distance": "Cosine"}})
call("PUT", "/collections/st/points?wait=true", {"points": [
    {"id": 1, "vector": [1, 2, 3, 4], "payload": {"a": 1}},
    {"id": 2, "vector": [2, 2, 3, 4], "payload": {"a": "x"}}]})
PY
printf '[parameters]\ncollection_name = "st"\n' > "$WORK/schemathesis.toml"
# Every route the router serves (bins/router/src/api/mod.rs) but the snapshot upload, whose
# multipart body the spec leaves open; DELETE is left out below, so that `st` stays.
SERVED='^/(collections(/aliases|/\{collection_name\}(/exists|/aliases|/shards(/delete)?|/cluster|/facet|/index(/\{field_name\})?|/vectors/\{vector_name\}|/points(/\{id\}|/delete|/batch|/vectors(/delete)?|/payload(/delete|/clear)?|/scroll|/count|/query(/batch|/groups)?|/search(/batch|/groups|/matrix/pairs|/matrix/offsets)?|/recommend(/batch|/groups)?|/discover(/batch)?)?|/snapshots(/recover|/\{snapshot_name\})?)?)?|aliases|snapshots(/\{snapshot_name\})?|healthz|livez|readyz|metrics)?$'
status=0
SPEC="$(realpath "$SPEC")"
# Run from the scratch directory: Schemathesis keeps a cache (.schemathesis/) where it runs.
(cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run \
  "$SPEC" -u "http://127.0.0.1:$PORT" \
  --include-path-regex "$SERVED" --exclude-method DELETE \
  --checks response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-time "$SECONDS_BUDGET" --workers 2 --no-color \
  --report junit --report-junit-path "$WORK/junit.xml") || true
echo "== checks failed and tool errors (JUnit report)"
"$VENV/bin/python" - "$WORK/junit.xml" <<'PY' || status=1
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = list(root.iter("testcase"))
failed = [c for c in cases if c.find("failure") is not None]
errors = [c for c in cases if c.find("error") is not None]
print(f"{len(cases)} operations, {len(failed)} with failed checks, {len(errors)} stopped by a tool error")
for c in errors:
    print("  tool error (not counted):", c.get("name"), (c.find("error").get("message") or "")[:200])
for c in failed:
    f = c.find("failure")
    print("  FAILED:", c.get("name"), (f.get("message") or "")[:300], (f.text or "")[:1500])
sys.exit(1 if failed or not cases else 0)
PY
echo "== answers by status (router access log)"
grep -o 'status=[0-9]*' "$WORK/router.log" | sort | uniq -c
if grep -E 'status=5(0[02-9]|[1-9][0-9])' "$WORK/router.log" > /dev/null; then
  echo "server errors other than 501:"; grep -E 'status=5(0[02-9]|[1-9][0-9])' "$WORK/router.log" | head
  status=1
fi
exit $status
