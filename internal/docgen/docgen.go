// Package docgen writes the command reference: one Markdown page per
// command of a cobra command tree, from the commands themselves (their
// usage, description, examples and flags with their defaults), so the
// reference cannot drift from the CLI. The output is deterministic: the
// same commands give the same bytes.
package docgen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Header opens every generated page.
const Header = "<!-- Generated from the cobra commands by `make docs`; do not edit. `go test ./cmd/nestattest` fails when it is out of date. -->\n"

// Pages renders the page of cmd and of every available command below it,
// by file name (nestattest_sign.md).
func Pages(cmd *cobra.Command) map[string][]byte {
	out := map[string][]byte{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		out[FileName(c)] = Page(c)
		for _, sub := range available(c) {
			walk(sub)
		}
	}
	walk(cmd)
	return out
}

// Write writes the pages into dir, removing generated pages of commands
// that no longer exist.
func Write(cmd *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pages := Pages(cmd)
	old, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	for _, f := range old {
		if _, keep := pages[filepath.Base(f)]; !keep && generated(f) {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	for name, b := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func generated(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.HasPrefix(b, []byte(Header))
}

// FileName is a command's page: its path joined by underscores.
func FileName(c *cobra.Command) string {
	return strings.ReplaceAll(c.CommandPath(), " ", "_") + ".md"
}

func available(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() && !sub.IsAdditionalHelpTopicCommand() {
			out = append(out, sub)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// Page renders one command's page.
func Page(c *cobra.Command) []byte {
	var b bytes.Buffer
	b.WriteString(Header)
	fmt.Fprintf(&b, "# %s\n\n%s.\n\n", c.CommandPath(), strings.TrimSuffix(c.Short, "."))
	if c.Runnable() {
		fmt.Fprintf(&b, "```text\n%s\n```\n\n", c.UseLine())
	}
	if c.Long != "" {
		b.WriteString(prose(c.Long) + "\n\n")
	}
	if c.Example != "" {
		// Shown as the CLI shows them; the runnable walkthrough is
		// docs/cli.md, whose commands the docs test runs.
		fmt.Fprintf(&b, "## Examples\n\n```text\n%s\n```\n\n", strings.TrimRight(c.Example, "\n"))
	}
	if subs := available(c); len(subs) > 0 {
		b.WriteString("## Commands\n\n| command | |\n|---|---|\n")
		for _, s := range subs {
			fmt.Fprintf(&b, "| [`%s`](%s) | %s |\n", s.Name(), FileName(s), cell(s.Short))
		}
		b.WriteString("\n")
	}
	flagTable(&b, "Flags", c.NonInheritedFlags())
	flagTable(&b, "Inherited flags", c.InheritedFlags())
	if c.HasParent() {
		fmt.Fprintf(&b, "See also [`%s`](%s).\n", c.Parent().CommandPath(), FileName(c.Parent()))
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

// flagTable lists a flag set: the flag with its value's name, its default
// where it has one, and its usage.
func flagTable(b *bytes.Buffer, title string, fs *pflag.FlagSet) {
	var rows []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		varname, usage := pflag.UnquoteUsage(f)
		name := "`--" + f.Name
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			name = "`-" + f.Shorthand + "`, " + name
		}
		if varname != "" {
			name += " " + varname
		}
		name += "`"
		if f.Deprecated != "" {
			usage += " (deprecated: " + f.Deprecated + ")"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |", name, def(f), cell(usage)))
	})
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "## %s\n\n| flag | default | |\n|---|---|---|\n%s\n\n", title, strings.Join(rows, "\n"))
}

// def is a flag's default, or nothing where it has none worth showing.
func def(f *pflag.Flag) string {
	switch f.DefValue {
	case "", "[]", "0s":
		return ""
	case "false":
		if f.Value.Type() == "bool" {
			return ""
		}
	case "0":
		if f.Value.Type() == "int" {
			return "`0`"
		}
	}
	return "`" + strings.ReplaceAll(f.DefValue, "|", `\|`) + "`"
}

// cell escapes text for a table cell.
func cell(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
	return strings.ReplaceAll(escape(s), "|", `\|`)
}

// prose is a command's long description as Markdown paragraphs: its lines
// kept, what Markdown would read as markup escaped.
func prose(s string) string {
	return escape(strings.TrimSpace(s))
}

var escaper = strings.NewReplacer(`\`, `\\`, "<", `\<`, ">", `\>`, "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "`", "\\`")

func escape(s string) string {
	// Text already in backticks stays as code.
	parts := strings.Split(s, "`")
	for i := 0; i < len(parts); i += 2 {
		parts[i] = escaper.Replace(parts[i])
	}
	if len(parts)%2 == 0 { // an odd backtick: escape it too
		return escaper.Replace(s)
	}
	return strings.Join(parts, "`")
}
