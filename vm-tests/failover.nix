# Failure handling: a stopped worker leaves the cluster and the rest keeps serving; a unit killed
# with SIGKILL comes back by itself, each restart after a longer delay than the one before.
{
  exoMachine,
  pyHelpers,
  ...
}:
{
  name = "exo-failover";

  nodes = {
    head = exoMachine {
      master.enable = true;
      worker.enable = true;
      api.enable = true;
      openFirewall = true;
    };
    w1 = exoMachine {
      worker.enable = true;
      join = [ "head:52416" ];
      joinTokenFile = "/run/exo-secrets/join-token";
      openFirewall = true;
    };
  };

  testScript = ''
    ${pyHelpers}

    head.wait_until_succeeds("curl -sf http://127.0.0.1:52415/readyz")
    # head's worker and API units join its master with the token exo-join-token minted; w1 gets one
    # from the master's CA too (only a master issues worker tokens, and head's API is not one).
    token = head.succeed(
        "exo cluster token --from-data-dir /var/lib/exo/master --role worker --ttl 10m"
    ).strip().splitlines()[0]
    w1.succeed(f"install -m 0600 /dev/stdin /run/exo-secrets/join-token <<< '{token}'")
    w1.succeed("systemctl restart exo-worker.service")
    w1.wait_for_unit("exo-worker.service")

    with subtest("a stopped worker leaves the cluster; the API keeps answering"):
        head.wait_until_succeeds(
            "curl -sf http://127.0.0.1:52415/api/v1/nodes | jq -e '.nodes | map(select(.name == \"w1\" and .status == \"alive\")) | length == 1'",
            timeout=120,
        )
        w1.succeed("systemctl stop exo-worker.service")
        head.wait_until_succeeds(
            "curl -sf http://127.0.0.1:52415/api/v1/nodes | jq -e '.nodes | map(select(.name == \"w1\" and .status == \"alive\")) | length == 0'",
            timeout=120,
        )
        head.succeed("curl -sf http://127.0.0.1:52415/healthz")

    with subtest("kill -9 restarts the unit with growing delays"):
        # Each restart loads the minted token again: it outlives the token unit (RuntimeDirectoryPreserve).
        unit = "exo-api.service"
        delays = []
        for _ in range(3):
            before = restarts(head, unit)
            pid = main_pid(head, unit)
            head.succeed(f"kill -9 {pid}")
            killed = time.monotonic()
            wait_restarted(head, unit, before)
            delays.append(time.monotonic() - killed)
            head.wait_until_succeeds("curl -sf http://127.0.0.1:52415/readyz")
        print(f"restart delays: {delays}")
        # RestartSec=1s growing over RestartSteps=6 to 1 min: each delay exceeds the previous.
        assert delays[0] < delays[1] < delays[2], delays
        head.succeed("journalctl -u exo-api.service --no-pager | grep -q 'Main process exited, code=killed, status=9/KILL'")

    with subtest("a configuration error is not retried"):
        head.succeed("systemctl set-environment EXO_LOG__LEVEL=loud")
        head.succeed("systemctl restart exo-worker.service || true")
        head.wait_until_fails("systemctl is-active exo-worker.service")
        head.succeed("sleep 5")
        assert restarts(head, "exo-worker.service") == 0
        head.succeed("systemctl unset-environment EXO_LOG__LEVEL")
        head.succeed("systemctl restart exo-worker.service")
        head.wait_for_unit("exo-worker.service")
  '';
}
