# The sandbox as the running service sees it: entering the mount namespace of the unit's main
# process shows what the service can reach. It cannot see /root, cannot write outside its state
# directory, sees no device nodes beyond the pseudo devices, and holds no capabilities.
{
  exoMachine,
  pyHelpers,
  ...
}:
{
  name = "exo-sandbox";

  nodes.machine = exoMachine {
    master.enable = true;
    worker.enable = true;
    api.enable = true;
  };

  testScript = ''
    ${pyHelpers}

    machine.succeed("echo secret > /root/secret")
    machine.wait_until_succeeds("curl -sf http://127.0.0.1:52415/readyz")

    for unit in ["exo-master", "exo-worker", "exo-api"]:
        role = unit.removeprefix("exo-")
        pid = main_pid(machine, unit)
        ns = f"nsenter --target {pid} --mount --"
        with subtest(f"{unit}: home directories are hidden"):
            machine.fail(f"{ns} cat /root/secret")
        with subtest(f"{unit}: the system is read-only, the state directory writable"):
            machine.fail(f"{ns} touch /etc/exo-probe")
            machine.fail(f"{ns} touch /var/lib/exo-probe")
            machine.fail(f"{ns} touch /var/lib/exo/{'api' if role != 'api' else 'master'}/probe")
            machine.succeed(f"{ns} touch /var/lib/exo/{role}/probe")
            machine.succeed(f"test -e /var/lib/exo/{role}/probe")
        with subtest(f"{unit}: private /tmp and devices"):
            machine.succeed(f"{ns} touch /tmp/probe")
            machine.fail("test -e /tmp/probe")
            machine.fail(f"{ns} test -e /dev/sda -o -e /dev/vda")
        with subtest(f"{unit}: no capabilities, no new privileges"):
            status = machine.succeed(f"cat /proc/{pid}/status")
            assert "CapEff:\t0000000000000000" in status, status
            assert "NoNewPrivs:\t1" in status, status
            uid = machine.succeed(f"stat -c %u /proc/{pid}").strip()
            assert uid != "0", "running as root"
  '';
}
