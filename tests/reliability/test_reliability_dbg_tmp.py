import time, json
def test_dbg(emulator_factory, stack_factory):
    emu = emulator_factory(token_lifetime_s=8)
    stack = stack_factory(emu, idle_timeout_s=120)
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < 22:
        t = time.monotonic() - t0
        if 5 <= t % 6 < 6: 
            emu.set_faults(status=500)
        else:
            emu.clear_faults()
        r = stack.token("app", min_validity_s=0)
        st = r.status
        if st != last:
            ents = stack.call("GET", "/v1/status").json()["entries"]
            print(f"{t:5.1f} {st} {r.body[:160] if st!=200 else r.json()['source']}")
            for e in ents:
                print("    ", {k: e.get(k) for k in e if k not in ("key",)})
            last = st
        time.sleep(0.1)
    print(stack.daemon.log_text()[-3000:])
