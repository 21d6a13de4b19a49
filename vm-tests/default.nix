# NixOS VM tests of the exo module, exposed as flake checks (checks.<system>.vm-*). They boot real
# NixOS machines under QEMU/KVM: run them on a machine with Nix and /dev/kvm, e.g.
#   nix build .#checks.x86_64-linux.vm-single-node -L
#   nix flake check -L            # all of them
#   nix run .#checks.x86_64-linux.vm-cluster.driverInteractive   # to poke at the VMs
{
  pkgs,
  module,
}:
let
  common = import ./common.nix { inherit pkgs module; };
  test = file: pkgs.testers.runNixOSTest (import file common);
in
{
  vm-single-node = test ./single-node.nix;
  vm-cluster = test ./cluster.nix;
  vm-failover = test ./failover.nix;
  vm-firewall = test ./firewall.nix;
  vm-sandbox = test ./sandbox.nix;
}
