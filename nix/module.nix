# NixOS module: services.exo runs the master, worker and API roles of an exo node as hardened
# systemd units (exo-master, exo-worker, exo-api, grouped by exo.target); next to a master, the
# oneshot exo-join-token mints the token the other units join it with.
#
# The units themselves (arguments, sandbox, lifecycle, firewall ports, K3s objects) come from the
# pure helpers in ./lib, which the checks on non-NixOS machines evaluate too; this file maps options
# onto them and wires the result into NixOS.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.exo;
  exoLib = import ./lib;
  settingsFormat = pkgs.formats.yaml { };

  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    types
    literalExpression
    ;

  enabledMap = {
    master = cfg.master.enable;
    worker = cfg.worker.enable;
    api = cfg.api.enable;
  };

  # Dotted keys of the leaves of `settings`, as exo's config loader flattens them.
  flattenKeys =
    prefix: attrs:
    lib.concatLists (
      lib.mapAttrsToList (
        k: v:
        let
          key = if prefix == "" then k else "${prefix}.${k}";
        in
        if builtins.isAttrs v && !lib.isDerivation v then flattenKeys key v else [ key ]
      ) attrs
    );

  rawConfig = settingsFormat.generate "exo-config.yaml" cfg.settings;

  # exo itself judges the file (unknown keys, types, ranges) while the system is built, so a typo
  # fails `nixos-rebuild` instead of a unit at boot. A cross-built system cannot run the target's
  # binary and skips the check.
  canValidate = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;
  configFile =
    pkgs.runCommand "exo-config.yaml"
      {
        preferLocalBuild = true;
      }
      ''
        ${lib.optionalString canValidate ''
          HOME="$TMPDIR" ${lib.getExe cfg.package} config validate ${rawConfig}
        ''}
        cp ${rawConfig} "$out"
      '';

  planOpts = {
    exe = lib.getExe cfg.finalPackage;
    roles = enabledMap;
    inherit (cfg)
      nodeName
      listenAddress
      join
      joinTokenFile
      apiKeyFile
      modelsDirs
      accelerator
      networkNamespace
      openFirewall
      extraArgs
      ;
    configFile = "${cfg.configFile}";
    ports = {
      raft = cfg.master.raftPort;
      transport = cfg.worker.transportPort;
    };
    gossipPorts = {
      master = cfg.master.gossipPort;
      worker = cfg.worker.gossipPort;
      api = cfg.api.gossipPort;
    };
    api = {
      inherit (cfg.api) host port;
      tls = {
        inherit (cfg.api.tls) enable certFile keyFile;
      };
    };
    settingsKeys = flattenKeys "" cfg.settings;
    k3s = {
      inherit (cfg.k3s) namespace;
      address = if cfg.k3s.address == null then "" else cfg.k3s.address;
    };
  };

  plan = exoLib.plan planOpts;

  secretPath =
    name: value:
    if value == null then
      [ ]
    else
      [
        {
          assertion = lib.hasPrefix "/" value && !lib.hasPrefix builtins.storeDir value;
          message = "services.exo.${name} must be an absolute path outside the Nix store (it is a secret); got ${value}";
        }
      ];

  gossipPortOption =
    role:
    mkOption {
      type = types.port;
      default = exoLib.gossipPort { roles = enabledMap; } role;
      defaultText = literalExpression "52416 + 10 * (position of ${role} among the enabled roles master, worker, api)";
      description = ''
        Gossip (serf) port of the ${role} unit, TCP and UDP (config key `gossip.addr`). Every role is
        its own cluster member, so roles on one host need distinct ports; a host running a single
        role uses 52416.
      '';
    };

  secretFileOption =
    what: key:
    mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/exo-${what}";
      description = ''
        File holding the ${what}, passed to the units with systemd's `LoadCredential=` (config key
        `${key}`): systemd reads it as root and hands the unit a private copy, so it need not be
        readable by the `exo` user and never enters the Nix store.
      '';
    };
in
{
  options.services.exo = {
    enable = mkEnableOption "exo, a node of an LLM inference cluster";

    package = mkOption {
      type = types.package;
      default = pkgs.exo or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.exo";
      description = ''
        The exo package. Its accelerator variant is chosen by {option}`services.exo.accelerator`;
        the result is {option}`services.exo.finalPackage`.
      '';
    };

    finalPackage = mkOption {
      type = types.package;
      readOnly = true;
      default =
        if cfg.package ? withAccelerator then cfg.package.withAccelerator cfg.accelerator else cfg.package;
      defaultText = literalExpression "services.exo.package.withAccelerator services.exo.accelerator";
      description = "The package the units run: {option}`services.exo.package` in the chosen accelerator variant.";
    };

    accelerator = mkOption {
      type = types.enum exoLib.accelerators;
      default = "cpu";
      description = ''
        Compute backend (config key `accelerator`). Selects the package variant (which runtime
        libraries the binary finds) and the device nodes the units may open: none for `cpu`
        (`PrivateDevices=true`), NVIDIA's for `cuda`, `/dev/kfd` and DRM render nodes for `rocm`,
        all of those for `opencl` (Intel, AMD and NVIDIA OpenCL drivers).
      '';
    };

    nodeName = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = literalExpression "config.networking.hostName";
      description = ''
        Display name of this node (config key `node.name`). When several roles run on this host,
        each unit is a cluster member of its own named `<nodeName>-<role>`.
      '';
    };

    listenAddress = mkOption {
      type = types.str;
      default = "";
      example = "10.0.0.5";
      description = ''
        Address the gossip, transport and raft listeners bind to; empty means every address. The
        API has its own {option}`services.exo.api.host`.
      '';
    };

    join = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "10.0.0.5:52416" ];
      description = ''
        Gossip addresses (host:port) of cluster members to join (config key `cluster.join`). Units
        on a host that also runs the master join it by themselves.
      '';
    };

    joinTokenFile =
      secretFileOption "cluster join token" "cluster.token_file"
      // {
        description = ''
          File holding the cluster join token, passed to the units with systemd's
          `LoadCredential=` (config key `cluster.token_file`): systemd reads it as root and hands
          the unit a private copy, so it need not be readable by the `exo` user and never enters
          the Nix store. A master gets it only when it has something to join
          ({option}`services.exo.join`). Units next to a master on this host join that master;
          when this option is null, the oneshot unit `exo-join-token` mints their token at boot
          from the cluster CA in the master's state directory.
        '';
      };

    apiKeyFile = secretFileOption "API keys (one bearer key per line)" "api.key_file";

    modelsDirs = mkOption {
      type = types.listOf types.str;
      default = [ "/var/lib/exo/models" ];
      description = ''
        Model directories (config key `models.dirs`); the first writable one receives pulls.
        Directories outside /var/lib/exo are created owned by `exo` and made writable in the
        sandbox.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open exactly the ports of the enabled roles: gossip (TCP+UDP) for every role, raft (TCP)
        for the master, transport (UDP for QUIC, TCP for the fallback) for the worker, and the API
        port (TCP) when the API listens beyond loopback.
      '';
    };

    networkNamespace = mkOption {
      type = types.nullOr (types.strMatching "[A-Za-z0-9_.-]+");
      default = null;
      example = "exo";
      description = ''
        Run the units inside this named network namespace (`/run/netns/<name>`), created by the
        `exo-netns` unit with only its loopback up. Connecting it to a network (a veth pair, a
        macvlan, a moved interface) is up to the host configuration, ordered after `exo-netns`.
      '';
    };

    settings = mkOption {
      type = types.submodule { freeformType = settingsFormat.type; };
      default = { };
      example = literalExpression ''
        {
          log.level = "debug";
          engine.threads = 16;
          api.shutdown_timeout = "60s";
        }
      '';
      description = ''
        exo configuration, written to /etc/exo/config.yaml and checked with `exo config validate`
        when the system is built. Keys are those of exo's README (Configuration). Keys that differ
        per unit or hold secrets (listen addresses, roles, node name, join list, token, API keys,
        TLS files, model directories, accelerator) have their own options; setting them here is
        an error that names the option to use.
      '';
    };

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      default = configFile;
      defaultText = literalExpression "the validated YAML rendering of services.exo.settings";
      description = "The generated configuration file the units read.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Extra command-line arguments for every unit.";
    };

    master = {
      enable = mkEnableOption "the master role (membership, replicated control state, placement): unit exo-master";
      gossipPort = gossipPortOption "master";
      raftPort = mkOption {
        type = types.port;
        default = exoLib.defaultPorts.raft;
        description = "Raft port of the master, TCP (config key `raft.addr`).";
      };
    };

    worker = {
      enable = mkEnableOption "the worker role (loads layer ranges, runs pipeline stages): unit exo-worker";
      gossipPort = gossipPortOption "worker";
      transportPort = mkOption {
        type = types.port;
        default = exoLib.defaultPorts.transport;
        description = "Tensor transport port of the worker: QUIC over UDP and a TCP fallback (config key `transport.addr`).";
      };
    };

    api = {
      enable = mkEnableOption "the API role (OpenAI and cluster API, dashboard, metrics): unit exo-api";
      gossipPort = gossipPortOption "api";
      host = mkOption {
        type = types.str;
        default = "127.0.0.1";
        description = ''
          Address the HTTP API listens on (config key `api.addr`). exo refuses an address beyond
          loopback without API keys ({option}`services.exo.apiKeyFile`).
        '';
      };
      port = mkOption {
        type = types.port;
        default = exoLib.defaultPorts.api;
        description = "HTTP API port (config key `api.addr`).";
      };
      tls = {
        enable = mkEnableOption "HTTPS for the API (config key `api.tls`); without certFile/keyFile a self-signed certificate is kept in the state directory";
        certFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "PEM certificate (config key `api.tls_cert`), passed with `LoadCredential=`.";
        };
        keyFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "PEM private key (config key `api.tls_key`), passed with `LoadCredential=`.";
        };
      };
    };

    k3s = {
      enable = mkEnableOption "Kubernetes objects for K3s: a headless Service `exo` backed by this host's address and a NetworkPolicy letting pods labelled `exo.io/client=true` reach it";
      namespace = mkOption {
        type = types.str;
        default = "exo";
        description = "Namespace of the K3s objects.";
      };
      address = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "10.0.0.5";
        description = "Address at which pods reach this host's exo listeners.";
      };
    };
  };

  config = mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions =
          map (message: {
            assertion = false;
            inherit message;
          }) plan.problems
          ++ secretPath "joinTokenFile" cfg.joinTokenFile
          ++ secretPath "apiKeyFile" cfg.apiKeyFile
          ++ secretPath "api.tls.keyFile" cfg.api.tls.keyFile
          ++ [
            {
              assertion = !cfg.k3s.enable || config.services.k3s.enable;
              message = "services.exo.k3s.enable adds manifests for K3s, but services.k3s.enable is false";
            }
            {
              assertion = !cfg.k3s.enable || cfg.k3s.address != null;
              message = "services.exo.k3s.enable needs services.exo.k3s.address (where pods reach this host)";
            }
          ];

        warnings = plan.warnings;

        users.users.exo = {
          isSystemUser = true;
          group = "exo";
          home = "/var/lib/exo";
          description = "exo inference cluster node";
        };
        users.groups.exo = { };

        # The roles' ports lie in the kernel's ephemeral range; keep outgoing sockets off them
        # (see reservedPorts in ./lib). A default, so a host's own list wins; it should then
        # include these ports.
        boot.kernel.sysctl."net.ipv4.ip_local_reserved_ports" = lib.mkDefault plan.reservedPorts;

        environment.systemPackages = [ cfg.finalPackage ];
        # Operators' `exo config show` reads the same file as the units.
        environment.etc."exo/config.yaml".source = cfg.configFile;

        systemd.targets.exo = {
          description = "exo inference cluster node (all enabled roles)";
          wantedBy = [ "multi-user.target" ];
          wants = map (n: "${n}.service") plan.unitNames;
        };

        systemd.services = lib.mapAttrs (
          _: u:
          let
            unit = u.sections.Unit;
          in
          {
            description = unit.Description;
            documentation = unit.Documentation;
            wantedBy = u.sections.Install.WantedBy;
            partOf = unit.PartOf;
            wants = unit.Wants or [ ];
            requires = unit.Requires or [ ];
            after = unit.After;
            before = unit.Before or [ ];
            bindsTo = unit.BindsTo or [ ];
            startLimitIntervalSec = unit.StartLimitIntervalSec;
            serviceConfig = u.sections.Service;
          }
          // lib.optionalAttrs (unit ? StartLimitBurst) { startLimitBurst = unit.StartLimitBurst; }
        ) plan.units;

        systemd.tmpfiles.settings."10-exo" = lib.listToAttrs (
          map (d: {
            name = d;
            value.d = {
              user = "exo";
              group = "exo";
              mode = "0750";
            };
          }) (exoLib.extraModelDirs planOpts)
        );
      }

      (mkIf cfg.openFirewall {
        networking.firewall.allowedTCPPorts = plan.firewall.tcp;
        networking.firewall.allowedUDPPorts = plan.firewall.udp;
      })

      (mkIf (cfg.networkNamespace != null) {
        systemd.services.exo-netns = {
          description = "Network namespace ${cfg.networkNamespace} for exo";
          before = map (r: "${exoLib.unitName r}.service") plan.roles;
          path = [
            pkgs.iproute2
            pkgs.procps
          ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
          };
          # An existing namespace is kept: interfaces another unit moved into it stay in place.
          # The port reservation is per namespace, so the host's does not reach this one.
          script = ''
            [ -e /run/netns/${cfg.networkNamespace} ] || ip netns add ${cfg.networkNamespace}
            ip -n ${cfg.networkNamespace} link set lo up
            ip netns exec ${cfg.networkNamespace} sysctl -q -w net.ipv4.ip_local_reserved_ports=${plan.reservedPorts}
          '';
          preStop = "ip netns delete ${cfg.networkNamespace}";
        };
      })

      (mkIf cfg.k3s.enable {
        services.k3s.manifests.exo.content = exoLib.k3sManifests planOpts;
      })
    ]
  );

  meta.maintainers = [ ];
}
