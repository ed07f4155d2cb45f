// Package shquote quotes words for a POSIX shell: what a command run over ssh
// needs, since ssh hands the remote shell one string, the words joined by
// spaces.
package shquote

import "strings"

// safe are the bytes a word may hold and go unquoted.
const safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%"

// Quote is w as one word for a POSIX shell: as it is when every byte is safe,
// else in single quotes, each single quote in it closing them, escaped, and
// reopening them.
func Quote(w string) string {
	if w != "" && strings.Trim(w, safe) == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// Join is the words quoted and joined by spaces: a command line for sh -c.
func Join(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}
