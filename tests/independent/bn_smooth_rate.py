import numpy as np, sys
def run(n,B,depth,phi,dphi,seed,probes=8):
    rng=np.random.default_rng(seed)
    x=rng.standard_normal((n,B))
    caches=[]; norms=[np.linalg.norm(x)]
    y=x
    for l in range(depth):
        W=rng.standard_normal((n,n))/np.sqrt(n)
        h=W@y
        mu=h.mean(1,keepdims=True); hc=h-mu; s=np.sqrt((hc**2).mean(1,keepdims=True)+1e-5)
        u=hc/s; y=phi(u)
        caches.append((W,u,s)); norms.append(np.linalg.norm(y))
    # backprop probes from output
    logs=np.zeros((probes,depth+1))
    for p in range(probes):
        g=rng.standard_normal((n,B))
        logs[p,depth]=np.log((g*g).sum())
        for l in range(depth-1,-1,-1):
            W,u,s=caches[l]
            gu=g*dphi(u)
            # BN backward: du/dh = (1/s)(I - 11/B - u u^T/B)
            gh=(gu-gu.mean(1,keepdims=True)-u*(gu*u).mean(1,keepdims=True))/s
            g=W.T@gh
            logs[p,l]=np.log((g*g).sum())
    # ln GSC(L,l)^2 approx = log E||g_l||^2/||g_L||^2 ... use mean over probes of squared norms
    sq=np.log(np.exp(logs).mean(0))
    lg=0.5*(sq-sq[depth]) + np.log(np.array(norms))-np.log(norms[-1])
    ls=np.arange(5,26); ys=lg[5:26]
    return -np.polyfit(ls,ys,1)[0]
th=np.tanh; dth=lambda x:1/np.cosh(x)**2
n=int(sys.argv[1]); B=int(sys.argv[2]); reps=int(sys.argv[3])
r=[run(n,B,30,th,dth,s) for s in range(reps)]
print(n,B,np.mean(r),np.std(r)/np.sqrt(len(r)))
