// The console's browser test, in a module of its own so that chromedp
// and its dependencies stay out of the library's module graph. From here:
//
//	go test -race -count=1 ./...
module github.com/spool-agent/spool-agent/web/browsertest

go 1.26.0

require (
	github.com/chromedp/chromedp v0.23.0
	github.com/spool-agent/spool-agent v0.0.0-00010101000000-000000000000
)

require (
	github.com/chromedp/cdproto v0.159.0 // indirect
	github.com/fsnotify/fsnotify v1.10.1 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/spool-agent/spool-agent => ../..
