# Median time of searches, one at a time, warm.
# Usage: python3 search_times.py FHIR_BASE TOKEN_FILE /Observation?... ...
import json, time, urllib.request, sys, statistics
base, token = sys.argv[1], open(sys.argv[2]).read().strip()
def get(url):
    r = urllib.request.Request(url if url.startswith("http") else base + url, headers={"Authorization": "Bearer " + token})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(r, timeout=120) as resp:
            body = resp.read(); status = resp.status
    except urllib.error.HTTPError as e:
        body = e.read(); status = e.code
    return status, (time.perf_counter() - t) * 1000, json.loads(body or b"{}")
def med(url, n=15):
    for _ in range(2): get(url)
    ts = []
    for _ in range(n):
        s, dt, b = get(url); ts.append(dt)
    return s, statistics.median(ts), b
qs = sys.argv[3:]
for q in qs:
    s, m, b = med(q)
    print(f"{m:8.2f} ms  {s}  total={b.get('total')} entries={len(b.get('entry',[]))}  {q}")
