package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/internal/pki"
)

func caCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "ca",
		Short: "Make the network CA and issue certificates",
		Long: `The network's certificate authority, made by fedstat itself. Every node, the
coordinator and every person gets a certificate from it; all traffic uses mutual TLS
with these certificates, and a node's certificate key also signs its partial results.

Keep ca.key offline once the network's certificates are issued.`,
		Example: `  fedstat ca init --dir pki --network regional-health
  fedstat ca issue --dir pki --name coordinator --role coordinator --host coord.example.org
  fedstat ca issue --dir pki --name hospital-a --role node --host 10.0.0.5
  fedstat ca issue --dir pki --name alice --role analyst`,
	}
	c.AddCommand(caInitCommand(), caIssueCommand())
	return c
}

func caInitCommand() *cobra.Command {
	var dir, network string
	var validity time.Duration
	c := &cobra.Command{
		Use:   "init",
		Short: "Make a new network CA (ca.crt, ca.key) in --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := pki.InitDir(dir, network, validity)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "made CA %q in %s (valid until %s)\n", ca.Cert.Subject.CommonName, dir, ca.Cert.NotAfter.Format(time.DateOnly))
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "pki", "directory for ca.crt and ca.key (created 0700)")
	c.Flags().StringVar(&network, "network", "fedstat", "name of the network, written into the CA's name")
	c.Flags().DurationVar(&validity, "validity", 10*365*24*time.Hour, "how long the CA is valid")
	return c
}

func caIssueCommand() *cobra.Command {
	var dir, name, role string
	var hosts []string
	var validity time.Duration
	c := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate (NAME.crt, NAME.key) for a node, the coordinator or a person",
		Long: `Issue a certificate signed by the CA in --dir. The certificate names its holder
(--name: the node id, "coordinator", or a user name) and carries its role:

  node         a data node (serves the node API, signs partials)
  coordinator  the coordinator (serves the analyst API, calls nodes)
  analyst      runs queries, sees released results of own queries
  researcher   like analyst, for research studies
  node-admin   administers a node
  operator     runs the network, sees all queries and the audit trail`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := pki.ParseRole(role)
			if err != nil {
				return &usageError{err.Error()}
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return err
			}
			id, err := ca.Issue(pki.IssueRequest{Name: name, Role: r, Hosts: hosts, Validity: validity})
			if err != nil {
				return err
			}
			if err := pki.WriteIdentity(dir, id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s (role %s): %s/%s and %s/%s\n", name, r, dir, pki.CertFile(name), dir, pki.KeyFile(name))
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "pki", "directory of the CA; the certificate and key are written there")
	c.Flags().StringVar(&name, "name", "", "holder: node id, coordinator, or user name (required)")
	c.Flags().StringVar(&role, "role", "", "node, coordinator, analyst, researcher, node-admin or operator (required)")
	c.Flags().StringSliceVar(&hosts, "host", nil, "DNS name or IP address the holder serves on (repeatable; servers only)")
	c.Flags().DurationVar(&validity, "validity", 365*24*time.Hour, "how long the certificate is valid")
	_ = c.MarkFlagRequired("name")
	_ = c.MarkFlagRequired("role")
	return c
}
