{
  description = "exo: one Go binary that turns a set of Linux machines into one LLM inference cluster";

  # One input on purpose: every other tool comes from this nixpkgs, so `nix flake update` is the
  # only way the build's world changes.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      version = "0.0.0-${self.shortRev or self.dirtyShortRev or "dirty"}";
      commit = self.rev or self.dirtyRev or "unknown";

      # NVRTC is unfree but redistributable; the CUDA variant needs it and nothing else unfree.
      allowUnfreePredicate =
        pkg:
        builtins.elem (lib.getName pkg) [ "cuda_nvrtc" ];

      pkgsFor =
        system:
        import nixpkgs {
          inherit system;
          overlays = [ self.overlays.default ];
          config = { inherit allowUnfreePredicate; };
        };

      forAllSystems = f: lib.genAttrs systems (system: f system (pkgsFor system));
    in
    {
      overlays.default = final: _prev: {
        exo = final.callPackage ./nix/package.nix { inherit version commit; };
        exo-cuda = final.exo.withAccelerator "cuda";
        exo-rocm = final.exo.withAccelerator "rocm";
        exo-opencl = final.exo.withAccelerator "opencl";
        exo-dashboard = final.exo.dashboard;
      };

      nixosModules.default =
        { pkgs, lib, ... }:
        {
          imports = [ ./nix/module.nix ];
          # The package is built with this flake's nixpkgs (which has the Go toolchain go.mod asks
          # for), whatever nixpkgs the system itself follows.
          services.exo.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.exo;
        };

      packages = forAllSystems (
        system: pkgs:
        {
          default = pkgs.exo;
          inherit (pkgs) exo exo-cuda exo-opencl;
          dashboard = pkgs.exo-dashboard;
        }
        # ROCm is packaged for x86_64 only.
        // lib.optionalAttrs (system == "x86_64-linux") {
          inherit (pkgs) exo-rocm;
          # Cross-built from x86_64-linux: `nix build .#exo-aarch64-linux`.
          exo-aarch64-linux = pkgs.pkgsCross.aarch64-multiplatform.exo;
        }
      );

      apps = forAllSystems (
        _: pkgs: {
          # `nix run` starts a node with every role; arguments go to `exo serve`.
          default = {
            type = "app";
            program = lib.getExe (
              pkgs.writeShellScriptBin "exo-serve" ''
                exec ${lib.getExe pkgs.exo} serve "$@"
              ''
            );
            meta.description = "Run an exo node with every role (exo serve)";
          };
        }
      );

      devShells = forAllSystems (
        _: pkgs: {
          default = pkgs.mkShell {
            packages = [
              pkgs.go_1_26
              pkgs.gopls
              pkgs.go-tools
              pkgs.nodejs_22
              pkgs.nixfmt
              pkgs.nil
              pkgs.nix-tree
              pkgs.systemd
            ];
          };
        }
      );

      formatter = forAllSystems (_: pkgs: pkgs.nixfmt-tree);

      checks = forAllSystems (
        system: pkgs:
        {
          # Building the package runs the Go tests (and the dashboard build runs Vitest).
          package = pkgs.exo;
          # The pure helpers' unit tests (nix/lib/tests.nix must evaluate to no failures).
          nix-lib =
            let
              failures = import ./nix/lib/tests.nix;
            in
            pkgs.runCommand "exo-nix-lib-tests" { } (
              if failures == [ ] then
                "touch $out"
              else
                throw "nix/lib/tests.nix: ${builtins.toJSON failures}"
            );
        }
        // import ./vm-tests {
          inherit pkgs;
          module = self.nixosModules.default;
        }
      );
    };
}
