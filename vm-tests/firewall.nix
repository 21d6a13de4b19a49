# openFirewall opens exactly the ports of the enabled roles. `w` runs only a worker; listeners are
# started by hand on the ports of the roles it does not run (API, raft), so a refused connection
# from `probe` shows the firewall, not a missing listener.
{
  exoMachine,
  pyHelpers,
  ...
}:
{
  name = "exo-firewall";

  nodes = {
    w = exoMachine {
      worker.enable = true;
      openFirewall = true;
    };
    probe =
      { pkgs, ... }:
      {
        environment.systemPackages = [ pkgs.netcat-openbsd ];
      };
  };

  testScript = ''
    ${pyHelpers}

    w.wait_for_unit("exo-worker.service")
    # Stand-ins on the ports of the roles w does not run, reachable locally.
    for port in [52415, 52418]:
        w.succeed(f"systemd-run --unit=standin-{port} nc -lk 0.0.0.0 {port}")
        w.wait_until_succeeds(f"nc -z 127.0.0.1 {port}")

    with subtest("ports of the worker role are open"):
        probe.wait_until_succeeds("nc -z -w 3 w 52416")   # gossip, tcp
        probe.wait_until_succeeds("nc -z -w 3 w 52417")   # transport fallback, tcp
        rules = w.succeed("nft list ruleset 2>/dev/null || iptables-save")
        for port in ["52416", "52417"]:
            assert port in rules, f"udp {port} not in the firewall rules"

    with subtest("ports of disabled roles stay closed"):
        probe.fail("nc -z -w 3 w 52415")   # api
        probe.fail("nc -z -w 3 w 52418")   # raft
  '';
}
