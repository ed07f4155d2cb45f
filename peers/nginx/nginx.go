// Package nginx holds the configuration bench writes for the peer:nginx reference
// server: nginx.conf.tmpl, embedded here as Template. README.md explains each
// setting and how bench runs nginx; nginx.conf is the template rendered with
// example values (bench's TestNginxConfig keeps the two equal), for running nginx
// by hand.
package nginx

import (
	_ "embed"
	"text/template"
)

//go:embed nginx.conf.tmpl
var text string

// Template renders nginx.conf from bench.NginxConfig's fields. It is parsed once,
// at init, from the embedded file: an error there is one in this package's file,
// which any test of bench's rendering catches.
var Template = template.Must(template.New("nginx.conf").Parse(text))
