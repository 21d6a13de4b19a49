package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/store"
)

func init() { addCommand(newModelsCmd) }

// modelStore opens the model directories that `exo serve` with the same flags, file and
// environment would use; the hub comes from HF_ENDPOINT and HF_TOKEN.
func modelStore(cmd *cobra.Command, edit func(*store.Options)) (*store.Store, error) {
	loaded, err := loadConfig(cmd, nil)
	if err != nil {
		return nil, err
	}
	opt := store.Options{
		Dirs:   loaded.Config.Models.Dirs,
		Hub:    store.HubFromEnv(os.Getenv),
		Logger: slog.New(dropPullEnd{slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})}),
	}
	if edit != nil {
		edit(&opt)
	}
	return store.New(opt), nil
}

// dropPullEnd leaves out the store's "model pull ended" record: the command prints the error
// itself.
type dropPullEnd struct{ slog.Handler }

func (d dropPullEnd) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == store.LogPullEnded {
		return nil
	}
	return d.Handler.Handle(ctx, r)
}

func (d dropPullEnd) WithAttrs(a []slog.Attr) slog.Handler {
	return dropPullEnd{d.Handler.WithAttrs(a)}
}
func (d dropPullEnd) WithGroup(n string) slog.Handler { return dropPullEnd{d.Handler.WithGroup(n)} }

func newModelsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "models",
		Short: "List, pull, import and remove models in this node's model directories",
		Long: `Models are GGUF files in the model directories (models.dirs, --models-dir; a directory
given as PATH:ro is never written). Pulls go to the first writable directory.

Pull sources:
  org/repo                  the repository's only GGUF file (or its Q4_K_M one)
  org/repo[@rev]:file.gguf  one file of a Hugging Face repository
  hf://org/repo/file.gguf   the same
  https://host/model.gguf   any URL (--sha256 to verify one whose server states no hash)

HF_ENDPOINT selects a hub mirror; HF_TOKEN is sent to the hub for gated and private
repositories (never to other hosts). Interrupted pulls resume where they stopped.`,
	}
	cmd.AddCommand(newModelsListCmd(), newModelsPullCmd(), newModelsImportCmd(), newModelsRmCmd())
	return cmd
}

func newModelsListCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the models and model directories of this node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := modelStore(cmd, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			models, problems := st.Catalog().List()
			dirs := st.Dirs()
			out := cmd.OutOrStdout()
			if asJSON {
				msgs := make([]string, 0, len(problems))
				for _, p := range problems {
					msgs = append(msgs, p.Error())
				}
				if models == nil {
					models = []store.Model{}
				}
				return json.NewEncoder(out).Encode(map[string]any{"models": models, "dirs": dirs, "problems": msgs})
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSIZE\tQUANT\tARCH\tLAYERS\tDIR")
			for _, m := range models {
				layers := strconv.Itoa(m.Layers)
				if m.Stage != nil {
					layers = fmt.Sprintf("%d-%d of %d", m.Stage.First, m.Stage.Last, m.Layers)
				}
				dir := m.Dir
				if m.ReadOnly {
					dir += " (read-only)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, store.HumanBytes(m.Size), m.Quantization, m.Arch, layers, dir)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(out)
			tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DIRECTORY\tMODELS\tUSED\tFREE\tMODE")
			for _, d := range dirs {
				mode := "writable"
				switch {
				case d.Marked:
					mode = "read-only (:ro)"
				case d.ReadOnly:
					mode = "read-only"
				case !d.Exists:
					mode = "writable (created on first pull)"
				}
				free := "?"
				if d.Free >= 0 {
					free = store.HumanBytes(d.Free)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", d.Path, d.Models, store.HumanBytes(d.Bytes), free, mode)
			}
			for _, p := range problems {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v\n", p)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	addConfigFlags(c.Flags(), false)
	return c
}

func newModelsPullCmd() *cobra.Command {
	var (
		asJSON, quiet bool
		layers, sum   string
		reserve       string
		parallel      int
	)
	c := &cobra.Command{
		Use:   "pull SOURCE",
		Short: "Download a model (or only the layers of one pipeline stage), resumable and verified",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := store.PullRequest{Source: args[0], SHA256: sum}
			if layers != "" {
				stage, err := parseLayers(layers)
				if err != nil {
					return usageError{err}
				}
				req.Layers = stage
			}
			var reserveBytes int64
			if reserve != "" {
				n, err := parseSize(reserve)
				if err != nil {
					return usageError{fmt.Errorf("--reserve: %w", err)}
				}
				reserveBytes = n
			}
			st, err := modelStore(cmd, func(o *store.Options) {
				o.Parallel, o.Reserve, o.ProgressInterval = parallel, reserveBytes, 200*time.Millisecond
			})
			if err != nil {
				return err
			}
			defer st.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var bar *progressBar
			if !quiet {
				bar = newProgressBar(cmd.ErrOrStderr())
			}
			m, err := st.Pull(ctx, req, func(p store.Progress) {
				if bar != nil {
					bar.update(p)
				}
			})
			if bar != nil {
				bar.finish()
			}
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("pull interrupted; run the same command again to resume: %w", err)
				}
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(m)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", m.ID, store.HumanBytes(m.Size), m.Path)
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&asJSON, "json", false, "print the pulled model as JSON")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	f.StringVar(&layers, "layers", "", "fetch only the tensors of layers A-B (B exclusive) into a stage file")
	f.StringVar(&sum, "sha256", "", "expected SHA-256 of the file (for URLs whose server states none)")
	f.StringVar(&reserve, "reserve", "", "space to leave free on the target file system, e.g. 10GiB")
	f.IntVar(&parallel, "parallel", 4, "ranges fetched at once")
	addConfigFlags(f, false)
	return c
}

func newModelsImportCmd() *cobra.Command {
	var asJSON, move bool
	c := &cobra.Command{
		Use:   "import FILE",
		Short: "Copy (or --move) a GGUF file into the first writable model directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := modelStore(cmd, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			m, err := st.Import(args[0], move)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(m)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", m.ID, store.HumanBytes(m.Size), m.Path)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the imported model as JSON")
	c.Flags().BoolVar(&move, "move", false, "move the file instead of copying it")
	addConfigFlags(c.Flags(), false)
	return c
}

func newModelsRmCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "rm ID",
		Short: "Remove a model (and any partial download of it) from the writable model directories",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := modelStore(cmd, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			r, err := st.Remove(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
			}
			for _, f := range r.Files {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", f)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	addConfigFlags(c.Flags(), false)
	return c
}

// parseLayers reads "A-B" (or "A:B"), the layer range [A, B).
func parseLayers(s string) (*store.Stage, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		a, b, ok = strings.Cut(s, ":")
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || first < 0 || last <= first {
		return nil, fmt.Errorf("--layers %q: want A-B with 0 <= A < B (layers A to B-1)", s)
	}
	return &store.Stage{First: first, Last: last}, nil
}

// parseSize reads a byte count with an optional unit: 1048576, 512MiB, 10G, 1.5TB.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	units := []struct {
		suffix string
		mult   float64
	}{
		{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (e.g. 1073741824, 512MiB, 10G)", s)
	}
	return int64(v * mult), nil
}

// progressBar draws pull progress on a terminal (redrawn in place) or, when the output is a
// file or pipe, as a line per state change and at most one line every few seconds.
type progressBar struct {
	w        io.Writer
	tty      bool
	lastLine time.Time
	state    string
	drawn    bool
}

func newProgressBar(w io.Writer) *progressBar {
	b := &progressBar{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.tty = true
		}
	}
	return b
}

// plainEvery is how often a non-terminal gets a progress line while bytes flow.
const plainEvery = 5 * time.Second

func (b *progressBar) update(p store.Progress) {
	changed := p.State != b.state
	b.state = p.State
	if b.tty {
		fmt.Fprintf(b.w, "\r%s\x1b[K", progressLine(p, 30))
		b.drawn = true
		if p.Finished() {
			fmt.Fprintln(b.w)
			b.drawn = false
		}
		return
	}
	if changed || time.Since(b.lastLine) >= plainEvery {
		fmt.Fprintln(b.w, progressLine(p, 0))
		b.lastLine = time.Now()
	}
}

func (b *progressBar) finish() {
	if b.tty && b.drawn {
		fmt.Fprintln(b.w)
	}
}

// progressLine renders one line: name, bar (width 0: none), percent, bytes, speed, ETA.
func progressLine(p store.Progress, width int) string {
	name := p.File
	if name == "" {
		name = p.Source
	}
	var sb strings.Builder
	sb.WriteString(name)
	switch p.State {
	case store.StateDownloading:
	case store.StateDone:
		fmt.Fprintf(&sb, "  done  %s", store.HumanBytes(p.Total))
		if p.Note != "" {
			fmt.Fprintf(&sb, "  (%s)", p.Note)
		} else if p.Verified {
			sb.WriteString("  sha256 verified")
		}
		return sb.String()
	case store.StateFailed, store.StateCancelled:
		fmt.Fprintf(&sb, "  %s", p.State)
		return sb.String()
	default:
		fmt.Fprintf(&sb, "  %s", p.State)
		if p.State != store.StateVerifying || p.Total == 0 {
			return sb.String()
		}
	}
	frac := 0.0
	if p.Total > 0 {
		frac = min(float64(p.Done)/float64(p.Total), 1)
	}
	if width > 0 {
		full := int(frac * float64(width))
		bar := strings.Repeat("=", full)
		if full < width {
			bar += ">" + strings.Repeat(" ", width-full-1)
		}
		fmt.Fprintf(&sb, "  [%s]", bar)
	}
	fmt.Fprintf(&sb, " %3.0f%%  %s/%s", frac*100, store.HumanBytes(p.Done), store.HumanBytes(p.Total))
	if p.State == store.StateDownloading {
		fmt.Fprintf(&sb, "  %s/s  ETA %s", store.HumanBytes(int64(p.BytesPerSec)), formatETA(p.ETASeconds, p.BytesPerSec))
	}
	if p.From == "peer" && p.Peers > 0 {
		fmt.Fprintf(&sb, "  from %d peer(s)", p.Peers)
	}
	if p.Resumed > 0 {
		fmt.Fprintf(&sb, "  (resumed at %s)", store.HumanBytes(p.Resumed))
	}
	return sb.String()
}

func formatETA(sec, rate float64) string {
	if rate <= 0 {
		return "--"
	}
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}
