# Memory per idle connection against the number of connections held.
# gnuplot -e "data='memory.dat'; output='memory-per-connection.png'" memory.gp
set terminal pngcairo size 1200,520 font "DejaVu Sans,11" noenhanced
set output output
set multiplot layout 1,2 title "Memory per idle connection" font ",13"
set grid lc rgb "#dddddd"
set key bottom right
set xlabel "idle connections held"
set format x "%.0s%c"
set yrange [0:*]
# A single N (a smoke run) still needs an x range to draw in.
stats data using 1 nooutput
if (STATS_min == STATS_max) set xrange [STATS_min * 0.5:STATS_max * 1.5]

set title "server process (user space)"
set ylabel "bytes per connection"
plot data using 1:3 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "tether, RSS growth", \
     '' using 1:2 with linespoints lw 2 pt 6 dt 2 lc rgb "#1f77b4" title "tether, heap growth", \
     '' using 1:5 with linespoints lw 2 pt 5 lc rgb "#ff7f0e" title "plain Asio + steady_timer, RSS growth", \
     '' using 1:4 with linespoints lw 2 pt 4 dt 2 lc rgb "#ff7f0e" title "plain Asio + steady_timer, heap growth", \
     512 with lines lw 2 dt 2 lc rgb "#d62728" title "goal: 512 B"

set title "kernel (per connection pair: client + server socket)"
set ylabel "bytes per pair"
plot data using 1:6 with linespoints lw 2 pt 7 lc rgb "#2ca02c" title "Slab", \
     '' using 1:($6-$8) with linespoints lw 2 pt 6 dt 2 lc rgb "#2ca02c" title "Slab without /proc fd-scan inodes", \
     '' using 1:7 with linespoints lw 2 pt 5 lc rgb "#9467bd" title "SUnreclaim"
unset multiplot
