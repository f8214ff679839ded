package docgen

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestPage(t *testing.T) {
	root := &cobra.Command{Use: "tool", Short: "Do things"}
	root.PersistentFlags().Bool("debug", false, "print more")
	sub := &cobra.Command{
		Use: "sign REF", Short: "Sign a tree", Long: "sign writes <repo>:sha256-<hex>.sig, see `cosign sign`.",
		Example: "  tool sign quay.io/org/x:v1", Run: func(*cobra.Command, []string) {},
	}
	sub.Flags().IntP("jobs", "j", 8, "requests at `N` at once")
	sub.Flags().String("key", "", "the key | a KMS reference")
	sub.Flags().Bool("mirrors", true, "sign mirrored copies")
	root.AddCommand(sub, &cobra.Command{Use: "hidden", Hidden: true, Run: func(*cobra.Command, []string) {}})
	pages := Pages(root)
	if len(pages) != 2 {
		t.Fatalf("pages %v", keys(pages))
	}
	p := string(pages["tool_sign.md"])
	for _, want := range []string{
		Header, "# tool sign\n\nSign a tree.\n", "```text\ntool sign REF [flags]\n```",
		`sign writes \<repo\>:sha256-\<hex\>.sig, see ` + "`cosign sign`.",
		"## Examples\n\n```text\n  tool sign quay.io/org/x:v1\n```",
		"| `-j`, `--jobs N` | `8` | requests at N at once |",
		"| `--key string` |  | the key \\| a KMS reference |",
		"| `--mirrors` | `true` | sign mirrored copies |",
		"## Inherited flags", "| `--debug` |  | print more |",
		"See also [`tool`](tool.md).",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("page lacks %q:\n%s", want, p)
		}
	}
	if r := string(pages["tool.md"]); !strings.Contains(r, "| [`sign`](tool_sign.md) | Sign a tree |") || strings.Contains(r, "hidden") {
		t.Errorf("root page:\n%s", r)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
