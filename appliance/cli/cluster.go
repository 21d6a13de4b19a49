package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/cluster"
	"github.com/exo-nix/exo/appliance/cluster/pki"
)

func init() { addCommand(newClusterCmd) }

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the cluster and issue join tokens (talks to the local node's API)",
	}
	cmd.AddCommand(newClusterStatusCmd(), newClusterMembersCmd(), newClusterTokenCmd())
	return cmd
}

// apiClient talks to the API of the node whose configuration the command loads, the same way
// `exo serve` would read it (file, environment, flags).
type apiClient struct {
	base string
	key  string
	http *http.Client
}

// addClientFlags registers the node configuration flags plus the client's own.
func addClientFlags(cmd *cobra.Command) {
	addConfigFlags(cmd.Flags(), false)
	cmd.Flags().String("api-key", "", "bearer API key (default: the first of api.keys / api.key_file)")
	cmd.Flags().Bool("json", false, "print the API's JSON answer")
}

func newAPIClient(cmd *cobra.Command) (*apiClient, error) {
	loaded, err := loadConfig(cmd, nil)
	if err != nil {
		return nil, err
	}
	cfg := loaded.Config
	host, port, err := net.SplitHostPort(cfg.API.Addr)
	if err != nil {
		return nil, fmt.Errorf("api.addr %q: %w", cfg.API.Addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // a wildcard listener is reachable on loopback
	}
	c := &apiClient{http: &http.Client{Timeout: 30 * time.Second}}
	scheme := "http"
	if cfg.API.TLS {
		scheme = "https"
		certFile := cfg.API.TLSCert
		if certFile == "" {
			certFile = filepath.Join(cfg.DataDir, "tls-cert.pem")
		}
		pinned, err := readPEMCert(certFile)
		if err != nil {
			return nil, fmt.Errorf("cannot trust the node's TLS certificate: %w", err)
		}
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // replaced by pinning the node's own certificate
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || !bytes.Equal(raw[0], pinned.Raw) {
					return errors.New("the API presented another certificate than " + certFile)
				}
				return nil
			},
		}}
	}
	c.base = scheme + "://" + net.JoinHostPort(host, port)
	c.key, _ = cmd.Flags().GetString("api-key")
	if c.key == "" && len(cfg.API.Keys) > 0 {
		c.key = cfg.API.Keys[0]
	}
	if c.key == "" && cfg.API.KeyFile != "" {
		if data, err := os.ReadFile(cfg.API.KeyFile); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					c.key = line
					break
				}
			}
		}
	}
	return c, nil
}

func readPEMCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

// do sends a request and decodes a 2xx JSON answer into out (and returns the raw body). An
// error answer becomes an error carrying the API's message.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the node's API at %s (is `exo serve` running with this configuration?): %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			return raw, fmt.Errorf("%s (HTTP %d)", e.Error.Message, resp.StatusCode)
		}
		return raw, fmt.Errorf("%s %s: HTTP %d: %.200s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return raw, nil
}

// printJSON re-indents an API answer for --json.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = w.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// apiCommand builds a command whose RunE gets a ready client.
func apiCommand(use, short string, args cobra.PositionalArgs, run func(cmd *cobra.Command, c *apiClient, args []string, asJSON bool) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			asJSON, _ := cmd.Flags().GetBool("json")
			return run(cmd, c, args, asJSON)
		},
	}
	addClientFlags(cmd)
	return cmd
}

func newClusterStatusCmd() *cobra.Command {
	return apiCommand("status", "Show the cluster: its ID, leader, members and instances", cobra.NoArgs,
		func(cmd *cobra.Command, c *apiClient, _ []string, asJSON bool) error {
			var info cluster.ClusterInfo
			raw, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/cluster", nil, &info)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, raw)
			}
			leader := "none"
			if info.Leader != nil {
				leader = fmt.Sprintf("%s (%s)", info.Leader.Name, short(info.Leader.ID))
			}
			fmt.Fprintf(out, "cluster:   %s\n", orDash(info.ID))
			fmt.Fprintf(out, "this node: %s (%s), roles %s, %s\n", info.Self.Name, short(info.Self.ID), strings.Join(info.Roles, ","), info.Phase)
			fmt.Fprintf(out, "leader:    %s\n", leader)
			fmt.Fprintf(out, "members:   %d (%d alive, %d masters alive)\n", info.Members, info.Alive, info.Masters)
			if info.Instances >= 0 {
				fmt.Fprintf(out, "instances: %d\n", info.Instances)
			}
			if info.Raft != nil {
				fmt.Fprintf(out, "raft:      %s, term %d, index %d, voters %d\n", info.Raft.State, info.Raft.Term, info.Raft.LastIndex, len(info.Raft.Voters))
			}
			return nil
		})
}

func newClusterMembersCmd() *cobra.Command {
	return apiCommand("members", "List the cluster's nodes with their roles and status", cobra.NoArgs,
		func(cmd *cobra.Command, c *apiClient, _ []string, asJSON bool) error {
			var res struct {
				Nodes []cluster.NodeInfo `json:"nodes"`
			}
			raw, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/nodes", nil, &res)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tROLES\tSTATUS\tLEADER\tADDR\tMEMORY OFFERED\tCPUS")
			for _, n := range res.Nodes {
				lead := ""
				if n.Leader {
					lead = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", n.Name, short(n.ID), strings.Join(n.Roles, ","), n.Status, lead, n.Addr, humanBytes(int64(n.Memory.Offered)), n.CPUs)
			}
			return tw.Flush()
		})
}

func newClusterTokenCmd() *cobra.Command {
	cmd := apiCommand("token", "Print a join token for new nodes (--role sets what they may join as, --ttl how long it is valid)", cobra.NoArgs,
		func(cmd *cobra.Command, c *apiClient, _ []string, asJSON bool) error {
			ttl, _ := cmd.Flags().GetDuration("ttl")
			role, _ := cmd.Flags().GetString("role")
			tr, err := pki.ParseTokenRole(role)
			if err != nil {
				return usageError{fmt.Errorf("--role: %w", err)}
			}
			if dir, _ := cmd.Flags().GetString("from-data-dir"); dir != "" {
				return offlineToken(cmd, dir, ttl, tr)
			}
			var tok cluster.TokenInfo
			raw, err := c.do(cmd.Context(), http.MethodPost, "/api/v1/cluster/token", map[string]string{"ttl": ttl.String(), "role": role}, &tok)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			// The token alone on stdout, so that `--token-file <(exo cluster token)` works.
			fmt.Fprintln(cmd.OutOrStdout(), tok.Token)
			join := map[string]string{"api": "exo api", "worker": "exo serve --roles worker,api", "master": "exo serve"}[tok.Role]
			if join == "" {
				join = "exo serve --roles " + tok.Role
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "a %s token, valid until %s; join with: %s --join <this node's gossip address> --token-file FILE\n",
				tok.Role, tok.Expires.Local().Format(time.RFC3339), join)
			return nil
		})
	cmd.Flags().Duration("ttl", time.Hour, "how long the token admits nodes")
	cmd.Flags().String("from-data-dir", "", "issue the token from the cluster CA in this master's data directory instead of asking a running node")
	cmd.Flags().String("out", "", "with --from-data-dir: write the token to this file (mode 0600) instead of stdout")
	cmd.Flags().String("role", "worker", "most privileged role the token admits: worker (joins as worker and/or api; the default, "+
		"least privilege for adding compute), api (api only), or master (any role; only master joins receive the cluster CA key and secret)")
	return cmd
}

// offlineToken mints a token with the CA of a master's data directory: the NixOS module's
// token unit uses it so that worker and API units on a master's host can join it at boot.
func offlineToken(cmd *cobra.Command, dataDir string, ttl time.Duration, role pki.TokenRole) error {
	ca, err := pki.LoadSigningCA(filepath.Join(dataDir, "cluster"))
	if err != nil {
		return err
	}
	if ttl <= 0 || ttl > 366*24*time.Hour {
		return usageError{fmt.Errorf("--ttl %s out of range (0, 8784h]", ttl)}
	}
	token, _, err := ca.IssueToken(ttl, role)
	if err != nil {
		return err
	}
	out, _ := cmd.Flags().GetString("out")
	if out == "" {
		fmt.Fprintln(cmd.OutOrStdout(), token)
		return nil
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	return nil
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
