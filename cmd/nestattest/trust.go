package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/identity"
	"github.com/nestattest/nestattest/trust"
)

// trustOptions are the flags that say whom a verification trusts: a key or
// a keyless identity, the trusted root, and cosign's rules on the evidence
// (attest.Trust). verify takes them as cosign verify names them; propagate
// takes them for the builder, each name after "source-". One group, so
// that both commands accept, refuse and explain them alike: attest.NewTrust
// validates them, and its errors name this group's flags.
type trustOptions struct {
	prefix      string
	key         string
	identity    attest.CertificateIdentity
	trustedRoot string
	ignoreTlog  bool
	ignoreSCT   bool
	signedTimes bool
}

// trustHelp is the help of each flag of the group, worded for the command
// that takes them.
type trustHelp struct {
	key, identity, identityRegexp, issuer, issuerRegexp string
	trustedRoot, ignoreTlog, ignoreSCT, signedTimes     string
}

// addFlags adds the group's flags, each named prefix and the attest
// option's name.
func (o *trustOptions) addFlags(cmd *cobra.Command, prefix string, help trustHelp) {
	o.prefix = prefix
	f := cmd.Flags()
	f.StringVar(&o.key, prefix+attest.OptionKey, "", help.key)
	f.StringVar(&o.identity.Subject, prefix+attest.OptionIdentity, "", help.identity)
	f.StringVar(&o.identity.SubjectRegexp, prefix+attest.OptionIdentityRegexp, "", help.identityRegexp)
	f.StringVar(&o.identity.Issuer, prefix+attest.OptionIssuer, "", help.issuer)
	f.StringVar(&o.identity.IssuerRegexp, prefix+attest.OptionIssuerRegexp, "", help.issuerRegexp)
	f.StringVar(&o.trustedRoot, prefix+attest.OptionTrustedRoot, "", help.trustedRoot)
	f.BoolVar(&o.ignoreTlog, prefix+attest.OptionIgnoreTlog, false, help.ignoreTlog)
	f.BoolVar(&o.ignoreSCT, prefix+attest.OptionIgnoreSCT, false, help.ignoreSCT)
	f.BoolVar(&o.signedTimes, prefix+attest.OptionSignedTimes, false, help.signedTimes)
}

// trust is the trust the flags describe: refused, naming the flags, when
// they conflict or fall short; the key loaded; the trusted root read
// (the group's --trusted-root, else tuf's repository) only when the trust
// needs one.
func (o *trustOptions) trust(ctx context.Context, s streams, tuf *tufOptions) (attest.Trust, error) {
	t, err := attest.NewTrust(ctx, attest.TrustOptions{
		Key: o.key, LoadKey: identity.LoadPublicKey, Identity: o.identity,
		IgnoreTlog: o.ignoreTlog, IgnoreSCT: o.ignoreSCT, UseSignedTimestamps: o.signedTimes,
		TrustedMaterial: func() (root.TrustedMaterial, error) {
			return trustedMaterial(s, o.trustedRoot, "--"+o.prefix+attest.OptionTrustedRoot, tuf)
		},
	})
	switch {
	case errors.Is(err, attest.ErrOptions):
		return attest.Trust{}, optionUsage(err, o.prefix)
	case errors.Is(err, attest.ErrKey):
		return attest.Trust{}, usageError{err}
	}
	return t, err
}

// signer names whom the flags trust, for people: the key as given, or the
// identity.
func (o *trustOptions) signer() string {
	if o.key != "" {
		return o.key
	}
	return o.identity.String()
}

// trustedMaterial is the sigstore trusted root at path (given with flag),
// else the TUF repository's.
func trustedMaterial(s streams, path, flag string, tuf *tufOptions) (root.TrustedMaterial, error) {
	if path == "" {
		return tuf.trustedRoot(s, flag)
	}
	tr, err := root.NewTrustedRootFromPath(path)
	if err != nil {
		return nil, usagef("%s %s: %v", flag, path, err)
	}
	return tr, nil
}

// tufOptions say which sigstore TUF repository the trust material comes
// from when no file names it: cosign's `initialize --mirror --root`, and a
// cache directory. The repository is opened once per run, on first need.
type tufOptions struct {
	mirror string
	root   string
	cache  string

	opened bool
	repo   *trust.Repository
	err    error
}

func (o *tufOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.mirror, "tuf-mirror", trust.DefaultMirror, "sigstore TUF repository the trusted root and signing config come from when no --trusted-root or --signing-config names them, as cosign initialize --mirror")
	f.StringVar(&o.root, "tuf-root", "", "root.json of the --tuf-mirror repository to start from, as cosign initialize --root (default: the public-good root built in; for another mirror, the root an earlier run cached)")
	f.StringVar(&o.cache, "tuf-cache", "", "directory the TUF metadata and targets are cached in, used offline until they expire (default $XDG_CACHE_HOME/nestattest/tuf, else ~/.cache/nestattest/tuf)")
}

// open reads the TUF repository, once: from its mirror, else from the
// cache while that is unexpired, saying so on stderr.
func (o *tufOptions) open(s streams) (*trust.Repository, error) {
	if o.opened {
		return o.repo, o.err
	}
	o.opened = true
	opts := trust.TUFOptions{Mirror: orDefault(o.mirror, trust.DefaultMirror), CacheDir: orDefault(o.cache, trust.DefaultCacheDir())}
	if o.root != "" {
		b, err := os.ReadFile(o.root)
		if err != nil {
			o.err = usagef("--tuf-root: %v", err)
			return nil, o.err
		}
		opts.Root = b
	}
	o.repo, o.err = trust.OpenTUF(opts)
	if o.err == nil && o.repo.Offline != nil {
		fmt.Fprintf(s.err, "note: %v; using the trust material cached in %s, valid until %s\n", o.repo.Offline, o.repo.CacheDir, o.repo.Expires.UTC().Format(time.RFC3339))
	}
	return o.repo, o.err
}

// trustedRoot is the TUF repository's trusted root. flag is the flag that
// would name a trusted root file instead, for the error.
func (o *tufOptions) trustedRoot(s streams, flag string) (*root.TrustedRoot, error) {
	repo, err := o.open(s)
	if err != nil {
		return nil, o.explain(err, flag)
	}
	tr, err := repo.TrustedRoot()
	if err != nil {
		return nil, usagef("%v; or give the trusted root itself with %s FILE", err, flag)
	}
	return tr, nil
}

// signingConfig is the TUF repository's signing config, nil when it
// serves none.
func (o *tufOptions) signingConfig(s streams) (*root.SigningConfig, error) {
	repo, err := o.open(s)
	if err != nil {
		return nil, o.explain(err, "--signing-config")
	}
	sc, err := repo.SigningConfig()
	if err != nil {
		return nil, usagef("%v; or name the services with --signing-config FILE", err)
	}
	if sc == nil {
		fmt.Fprintf(s.err, "note: the TUF repository at %s serves no %s; the services are the flags' (--fulcio-url, --rekor-url, --timestamp-server-url)\n", repo.Mirror, trust.SigningConfigTarget)
	}
	return sc, nil
}

// explain says how to go on when the repository could not be read: another
// mirror, or the trust material itself (flag).
func (o *tufOptions) explain(err error, flag string) error {
	switch {
	case errors.Is(err, trust.ErrUnreachable):
		return usagef("%v; name a reachable mirror of it with --tuf-mirror URL (and its root.json with --tuf-root FILE), or give the trust material itself with %s FILE", err, flag)
	case errors.Is(err, trust.ErrNoRoot):
		return usagef("%v with --tuf-root FILE, or give the trust material itself with %s FILE", err, flag)
	}
	return err
}

// optionUsage is the library's refusal of a Trust's or Requirements'
// options as bad input, naming the flags after prefix.
func optionUsage(err error, prefix string) error {
	var oe *attest.OptionError
	if errors.As(err, &oe) {
		oe.Prefix = prefix
	}
	return usageError{err}
}
