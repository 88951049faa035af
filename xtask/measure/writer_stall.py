# Times the largest resource the limits allow against small writes running beside it.
# Usage: python3 writer_stall.py BASE_URL TOKEN   (BASE_URL of a running `ironchart serve`, without /fhir)
import json, time, threading, urllib.request, sys
base, token = sys.argv[1], sys.argv[2]
def req(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(base + path, data=data, method=method,
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/fhir+json"})
    t = time.time()
    try:
        with urllib.request.urlopen(r) as resp:
            resp.read(); status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code; e.read()
    return status, time.time() - t
# worst allowed: 9,999 identifiers, ~4 MiB
val = "v" * 360
ids = [{"system": "urn:x", "value": f"{i}-{val}"} for i in range(9900)]
big = {"resourceType": "Patient", "id": "big", "identifier": ids}
print("big body bytes", len(json.dumps(big)))
small_lat = []
stop = False
def small():
    i = 0
    while not stop:
        s, dt = req("PUT", f"/fhir/Patient/s{i%50}", {"resourceType": "Patient", "id": f"s{i%50}", "active": True})
        small_lat.append(dt); i += 1
th = threading.Thread(target=small); th.start()
time.sleep(1)
for n in range(3):
    s, dt = req("PUT", "/fhir/Patient/big", big)
    print("big PUT", s, f"{dt*1000:.0f} ms")
time.sleep(1)
stop = True; th.join()
small_lat.sort()
print("small writes", len(small_lat), "p50 %.1f ms p99 %.1f ms max %.1f ms" % (small_lat[len(small_lat)//2]*1000, small_lat[int(len(small_lat)*.99)]*1000, small_lat[-1]*1000))
# too big: 380,000 identifiers
ids = [{"value": str(i)} for i in range(380000)]
s, dt = req("POST", "/fhir/Patient", {"resourceType": "Patient", "identifier": ids})
print("13MB-ish PUT", s, f"{dt*1000:.0f} ms")
