"""The balancer's data path: HTTP/1.1 in and out, on asyncio transports, with a strict parser and hard limits.

A learner can read each module in one sitting; each opens with the rules it enforces.

=====================  =========================================================================================
:mod:`.messages`       what a proxy changes in a message (hop-by-hop headers, X-Forwarded-*, the target) and
                       what it refuses to pass on (an open proxy's requests)
:mod:`.limits`         the timeouts and sizes that keep slow or hostile clients from taking the balancer down
:mod:`.server`         the client side: strict parsing (httptools), pipelining in order, 400/408/413/431
:mod:`.listener`       accepting connections: a long backlog, a connection cap, surviving EMFILE
:mod:`.upstream`       the instance side: kept-alive connections, strict parsing of answers, how attempts fail
=====================  =========================================================================================

:mod:`spofkit.balancer` puts them together with the policy (:mod:`spofkit.policy`), which decides everything.
"""
