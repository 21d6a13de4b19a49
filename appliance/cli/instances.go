package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/exo-nix/exo/appliance/cluster"
	"github.com/exo-nix/exo/appliance/cluster/state"
)

func init() { addCommand(newInstancesCmd) }

func newInstancesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "instances",
		Short: "Create, list, remove and rebalance model instances (talks to the local node's API)",
	}
	cmd.AddCommand(newInstancesCreateCmd(), newInstancesListCmd(), newInstancesRmCmd(), newInstancesRebalanceCmd())
	return cmd
}

func newInstancesCreateCmd() *cobra.Command {
	cmd := apiCommand("create MODEL", "Place a model instance on the cluster", cobra.ExactArgs(1),
		func(cmd *cobra.Command, c *apiClient, args []string, asJSON bool) error {
			req := cluster.InstanceRequest{Model: args[0]}
			req.MinNodes, _ = cmd.Flags().GetInt("min-nodes")
			req.Context, _ = cmd.Flags().GetInt("context")
			req.Nodes, _ = cmd.Flags().GetStringSlice("nodes")
			req.TensorParallel, _ = cmd.Flags().GetInt("tensor-parallel")
			if dry, _ := cmd.Flags().GetBool("dry-run"); dry {
				q := url.Values{"model": {req.Model}}
				if req.MinNodes > 0 {
					q.Set("min_nodes", fmt.Sprint(req.MinNodes))
				}
				if req.Context > 0 {
					q.Set("context", fmt.Sprint(req.Context))
				}
				if len(req.Nodes) > 0 {
					q.Set("nodes", strings.Join(req.Nodes, ","))
				}
				if req.TensorParallel > 0 {
					q.Set("tensor_parallel", fmt.Sprint(req.TensorParallel))
				}
				var p cluster.PlacementPreview
				raw, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/placement?"+q.Encode(), nil, &p)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "would place %s (context %d), predicted %.3f ms/token:\n", p.Model, p.Context, p.Plan.TokenMs)
				for _, s := range p.Plan.Stages {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s (%s) layers [%d,%d) %s\n", s.Name, short(s.Node), s.Start, s.End, humanBytes(int64(s.MemoryBytes)))
					for i, m := range s.Shards {
						fmt.Fprintf(cmd.OutOrStdout(), "    shard %d on %s (%s), %s too; swaps %.3f ms/token\n", i+1, m.Name, short(m.Node), humanBytes(int64(s.MemoryBytes)), s.SwapMs)
					}
				}
				return nil
			}
			var in state.Instance
			raw, err := c.do(cmd.Context(), http.MethodPost, "/api/v1/instances", req, &in)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s\n", in.ID)
			return printInstances(cmd, []state.Instance{in})
		})
	cmd.Flags().Int("min-nodes", 0, "spread over at least this many nodes")
	cmd.Flags().Int("context", 0, "tokens of KV cache to reserve (default 4096 or the model's maximum)")
	cmd.Flags().StringSlice("nodes", nil, "only use these nodes (IDs or names, comma separated)")
	cmd.Flags().Int("tensor-parallel", 0, "run every stage on a group of this many nodes (2-4), each holding a share of every matrix (0 or 1: one node a stage)")
	cmd.Flags().Bool("dry-run", false, "show the placement without creating the instance")
	return cmd
}

func newInstancesListCmd() *cobra.Command {
	return apiCommand("list", "List model instances and where they run", cobra.NoArgs,
		func(cmd *cobra.Command, c *apiClient, _ []string, asJSON bool) error {
			var res struct {
				Instances []state.Instance `json:"instances"`
			}
			raw, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/instances", nil, &res)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			return printInstances(cmd, res.Instances)
		})
}

func newInstancesRmCmd() *cobra.Command {
	return apiCommand("rm ID", "Remove a model instance", cobra.ExactArgs(1),
		func(cmd *cobra.Command, c *apiClient, args []string, asJSON bool) error {
			raw, err := c.do(cmd.Context(), http.MethodDelete, "/api/v1/instances/"+url.PathEscape(args[0]), nil, nil)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		})
}

func newInstancesRebalanceCmd() *cobra.Command {
	return apiCommand("rebalance [ID]", "Re-plan one instance, or all, on the nodes there are now", cobra.MaximumNArgs(1),
		func(cmd *cobra.Command, c *apiClient, args []string, asJSON bool) error {
			body := map[string]string{}
			if len(args) == 1 {
				body["id"] = args[0]
			}
			var res cluster.RebalanceResult
			raw, err := c.do(cmd.Context(), http.MethodPost, "/api/v1/instances/rebalance", body, &res)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			if len(res.Moved) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing moved: every instance is where the planner would put it")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "moved %s\n", strings.Join(res.Moved, ", "))
			return printInstances(cmd, res.Instances)
		})
}

func printInstances(cmd *cobra.Command, list []state.Instance) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMODEL\tSTATUS\tSTAGES\tMS/TOKEN\tREASON")
	for _, in := range list {
		var stages []string
		for _, s := range in.Stages {
			stages = append(stages, s.Describe())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.3f\t%s\n", in.ID, in.Model, in.Status, strings.Join(stages, " "), in.PredictedTokenMs, in.Reason)
	}
	return tw.Flush()
}
