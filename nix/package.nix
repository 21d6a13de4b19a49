# The exo binary. One Go build serves every accelerator: vendor libraries are loaded at run time
# (purego dlopen), so a variant is the same binary wrapped so that its runtime libraries are found,
# with that backend as the default (EXO_ACCELERATOR, which --accelerator and an EXO_ACCELERATOR of
# the caller's own still override).
{
  lib,
  stdenvNoCC,
  buildGo126Module,
  buildPackages,
  makeBinaryWrapper,
  addDriverRunpath,
  ocl-icd,
  cudaPackages,
  rocmPackages,
  accelerator ? "cpu",
  version ? "0.0.0-dev",
  commit ? "unknown",
  dashboard ? buildPackages.callPackage ./dashboard.nix { inherit version; },
}:
let
  root = ../.;

  unwrapped = buildGo126Module {
    pname = "exo";
    inherit version;

    src = lib.fileset.toSource {
      inherit root;
      fileset = lib.fileset.unions [
        (root + "/go.mod")
        (root + "/go.sum")
        (root + "/main.go")
        (root + "/embed.go")
        (root + "/appliance")
        (root + "/netstack")
        (lib.fileset.maybeMissing (root + "/frontend/dist/.keep"))
      ];
    };

    # Recomputed by nix/check.sh (`nix/check.sh vendor-hash`), which fails with the new value when
    # go.mod or go.sum change.
    vendorHash = "sha256-YVRqetaheLtY4pb0HmJr+GfD+Xso1xJ6h6naYWsRRsg=";

    # go-nvml binds NVML through cgo (it still dlopens the library at run time).
    env.CGO_ENABLED = 1;

    ldflags = [
      "-s"
      "-w"
      "-X github.com/exo-nix/exo/appliance/buildinfo.Version=${version}"
      "-X github.com/exo-nix/exo/appliance/buildinfo.Commit=${commit}"
    ];

    # embed.go embeds frontend/dist; the dashboard is built separately and put in place before the
    # Go build (postConfigure runs only for the package, not for the vendored modules).
    postConfigure = ''
      mkdir -p frontend/dist
      cp -r --no-preserve=mode ${dashboard}/. frontend/dist/
    '';

    # The Go tests run as part of the build. Tests needing the shared fixtures or host tools skip
    # with their reason in the sandbox.
    doCheck = true;

    passthru = {
      inherit dashboard;
    };

    meta = {
      description = "One Go binary that turns a set of Linux machines into one LLM inference cluster";
      homepage = "https://github.com/exo-nix/exo";
      mainProgram = "exo";
      platforms = lib.platforms.linux;
    };
  };

  driverLib = "${addDriverRunpath.driverLink}/lib";

  # Libraries each backend dlopens, besides what the host's driver provides.
  runtimeLibraries = {
    # libcuda and libnvidia-ml come with the NVIDIA driver; NVRTC compiles the kernels.
    cuda = [
      driverLib
      "${lib.getLib cudaPackages.cuda_nvrtc}/lib"
    ];
    # HIP runtime and hipRTC.
    rocm = [
      driverLib
      "${lib.getLib rocmPackages.clr}/lib"
    ];
    # The ICD loader; vendor drivers register under /run/opengl-driver/etc/OpenCL/vendors.
    opencl = [
      driverLib
      "${lib.getLib ocl-icd}/lib"
    ];
  };

  variant =
    acc:
    if acc == "cpu" then
      unwrapped.overrideAttrs (old: {
        passthru = (old.passthru or { }) // passthru;
      })
    else if runtimeLibraries ? ${acc} then
      stdenvNoCC.mkDerivation {
        pname = "exo-${acc}";
        inherit version;
        nativeBuildInputs = [ makeBinaryWrapper ];
        dontUnpack = true;
        installPhase = ''
          runHook preInstall
          makeWrapper ${lib.getExe unwrapped} "$out/bin/exo" \
            --prefix LD_LIBRARY_PATH : ${lib.concatStringsSep ":" runtimeLibraries.${acc}} \
            --set-default EXO_ACCELERATOR ${acc}
          runHook postInstall
        '';
        passthru = passthru // {
          accelerator = acc;
        };
        meta = unwrapped.meta // {
          description = "${unwrapped.meta.description} (${acc} variant)";
        };
      }
    else
      throw "exo: unknown accelerator ${acc}; expected one of cpu, cuda, rocm, opencl";

  passthru = {
    inherit unwrapped dashboard;
    accelerator = "cpu";
    # The NixOS module picks the variant of whatever package it was given through this.
    withAccelerator = variant;
  };
in
variant accelerator
