package shquote

import (
	"os/exec"
	"testing"
)

// TestQuote: each word comes back from a real shell as it went in.
func TestQuote(t *testing.T) {
	words := []string{"abc", "", "a b", "it's", `"$HOME"`, "`id`", "a\nb", "-o", "x;y|z&", "*", "~", "\\", "é"}
	for w, want := range map[string]string{"abc": "abc", "a b": "'a b'", "it's": `'it'\''s'`, "": "''", "/tmp/x": "/tmp/x"} {
		if got := Quote(w); got != want {
			t.Errorf("Quote(%q) = %s, want %s", w, got, want)
		}
	}
	out, err := exec.Command("sh", "-c", `for w in `+Join(words)+`; do printf '%s\0' "$w"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	start := 0
	for i, b := range out {
		if b == 0 {
			got = append(got, string(out[start:i]))
			start = i + 1
		}
	}
	if len(got) != len(words) {
		t.Fatalf("the shell saw %q, want %q", got, words)
	}
	for i := range words {
		if got[i] != words[i] {
			t.Errorf("word %d: the shell saw %q, want %q", i, got[i], words[i])
		}
	}
}
