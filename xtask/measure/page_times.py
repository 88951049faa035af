# Time of each page of a search, following its next links (up to 6 pages).
# Usage: python3 page_times.py FHIR_BASE TOKEN_FILE /Observation?... ...
import json, time, urllib.request, sys
base, token = sys.argv[1], open(sys.argv[2]).read().strip()
def get(url):
    r = urllib.request.Request(url if url.startswith("http") else base + url, headers={"Authorization": "Bearer " + token})
    t = time.perf_counter()
    with urllib.request.urlopen(r, timeout=120) as resp: body = resp.read()
    return (time.perf_counter() - t) * 1000, json.loads(body)
for q in sys.argv[3:]:
    url = q; times = []
    for page in range(int(6)):
        dt, b = get(url); times.append(dt)
        nxt = [l["url"] for l in b.get("link", []) if l["relation"] == "next"]
        if not nxt: break
        url = nxt[0]
    print(q, " ".join(f"{t:.1f}" for t in times), "ms per page")
