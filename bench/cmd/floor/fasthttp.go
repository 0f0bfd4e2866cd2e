package main

import (
	"fmt"

	"github.com/valyala/fasthttp"
)

// serveFasthttp proxies listen to backend with fasthttp's Server and a
// HostClient and nothing else.
func serveFasthttp(listen, backend string) {
	hc := &fasthttp.HostClient{Addr: backend, MaxConns: 1024}
	s := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error(err.Error(), fasthttp.StatusBadGateway)
			}
		},
		DisableHeaderNamesNormalizing: true,
		NoDefaultServerHeader:         true,
	}
	if err := s.ListenAndServe(listen); err != nil {
		fmt.Println("serve-fasthttp:", err)
	}
}
