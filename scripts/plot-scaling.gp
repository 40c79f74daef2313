# Makes docs/img/scaling-isoflop.png: the Chinchilla parametric loss L(N, C/6N) against parameters N
# at fixed compute C (IsoFLOP curves), with Gopher and Chinchilla marked. Run: gnuplot scripts/plot-scaling.gp
# (Debian: gnuplot-nox). Constants as include/minigpt/frugal/scaling.hpp.
set terminal png size 900,560 font ",11"
set output "docs/img/scaling-isoflop.png"
E = 1.69; A = 406.4; B = 410.7; al = 0.3392; be = 0.2849
L(N, C) = E + A / N**al + B / (C / (6 * N))**be
G = (al * A / (be * B))**(1 / (al + be)); a = be / (al + be)
Nopt(C) = G * (C / 6)**a
set logscale x
set xrange [1e8:3e12]
set yrange [1.8:2.6]
set format x "10^{%L}"
set xlabel "parameters N"
set ylabel "predicted loss L(N, C / 6N)"
set title "Chinchilla parametric loss at fixed compute (IsoFLOP curves)"
set key top right
set samples 400
set label 1 "Gopher 280B, 300B tok" at 280e9, 1.9639 point pt 7 ps 1.4 offset -16,1.2
set label 2 "Chinchilla 70B, 1.4T tok" at 70e9, 1.9174 point pt 9 ps 1.4 offset -8,-1.2
set arrow from Nopt(5.76e23), graph 0 to Nopt(5.76e23), graph 1 nohead dt 2 lc rgb "#888888"
plot L(x, 1e21) title "C = 1e21 FLOPs" lw 2, \
     L(x, 1e22) title "C = 1e22" lw 2, \
     L(x, 5.76e23) title "C = 5.76e23 (Gopher's budget)" lw 2, \
     L(x, 1e25) title "C = 1e25" lw 2
