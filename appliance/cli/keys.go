package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/apikeys"
)

func init() { addCommand(newKeysCmd) }

// keysStore opens the key file of the data directory that `exo serve` with the same flags,
// file and environment would use. It works while the node runs: the node notices new keys.
func keysStore(cmd *cobra.Command) (*apikeys.Store, error) {
	loaded, err := loadConfig(cmd, nil)
	if err != nil {
		return nil, err
	}
	return apikeys.Open(loaded.Config.DataDir), nil
}

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the API keys of this node (stored hashed in the data directory)"}
	var asJSON bool
	var name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API key and print it once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := keysStore(cmd)
			if err != nil {
				return err
			}
			secret, k, err := s.Create(name)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]any{"key": secret, "id": k.ID, "name": k.Name, "created": k.Created})
			}
			fmt.Fprintln(out, secret)
			fmt.Fprintf(cmd.ErrOrStderr(), "created API key %s; it is shown only now. Clients send it as: Authorization: Bearer <key>\n", k.ID)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "a label to recognise the key by")
	list := &cobra.Command{
		Use:   "list",
		Short: "List API keys (ids, names and hints; never the keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := keysStore(cmd)
			if err != nil {
				return err
			}
			keys, err := s.List()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				rows := make([]map[string]any, 0, len(keys))
				for _, k := range keys {
					rows = append(rows, map[string]any{"id": k.ID, "name": k.Name, "hint": k.Hint, "created": k.Created})
				}
				return json.NewEncoder(out).Encode(map[string]any{"keys": rows})
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tHINT\tCREATED")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Hint, k.Created.Format("2006-01-02 15:04:05Z"))
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := keysStore(cmd)
			if err != nil {
				return err
			}
			if err := s.Revoke(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		},
	}
	create.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	list.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	for _, c := range []*cobra.Command{create, list, revoke} {
		addConfigFlags(c.Flags(), false)
		cmd.AddCommand(c)
	}
	return cmd
}
