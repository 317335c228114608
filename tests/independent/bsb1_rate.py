"""Independent check of the batch-norm BSB1 rate for tanh (theory/batch-norm.md): plain Monte Carlo over
the batch-norm output sphere (u = sqrt(B) P g / ||P g||, g ~ N(0, I_B)), no code shared with gradscale.
Usage: python3 bsb1_rate.py B CHUNKS  (50000 draws per chunk; seed 123 + B). Prints B, lambda, se.
Used for the fixtures of tests/bsb1.rs: B = 16, 200 chunks; B = 64, 100 chunks.
"""
import math
import numpy as np, math
th=np.tanh; dth=lambda x:1/np.cosh(x)**2
import sys
B=int(sys.argv[1])
# per-chunk ratio estimator is biased slightly; accumulate numerator and denominator separately
rng=np.random.default_rng(123+B)
Qs=[];Vs=[]
for _ in range(int(sys.argv[2])):
    g=rng.standard_normal((50000,B)); g-=g.mean(1,keepdims=True)
    u=g*np.sqrt(B)/np.linalg.norm(g,axis=1,keepdims=True)
    a=dth(u); y=th(u)
    Q=(a*a).sum(1)*(1-2/B)+a.sum(1)**2/B**2-(((a*u)**2).sum(1)-(a*u).sum(1)**2/B)/B
    yc=y-y.mean(1,keepdims=True)
    Qs.append(Q.mean()); Vs.append((yc*yc).sum(1).mean())
Qs=np.array(Qs);Vs=np.array(Vs); k=len(Qs)
mQ,mV=Qs.mean(),Vs.mean()
lam=B/((B-3)*(B-1))*mQ*(B-1)/mV
# delta method se
cov=np.cov(np.stack([Qs,Vs]))/k
gr=np.array([1/mQ,-1/mV])
se=lam*math.sqrt(gr@cov@gr)
print(B,lam,se)
