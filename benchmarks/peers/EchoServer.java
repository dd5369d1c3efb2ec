// The Netty peer of the peer comparison (benchmarks/peers): an idiomatic Netty 4.1 echo server on the NIO
// transport, watching its connections the way Netty services do. IdleStateHandler is the idle reaper (its event
// closes the channel), SO_KEEPALIVE the kernel probe, TCP_NODELAY on; default event loop groups. It prints
// "port N" once it listens and echoes every newline-terminated line as it arrives.
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.LineBasedFrameDecoder;
import io.netty.handler.timeout.IdleStateEvent;
import io.netty.handler.timeout.IdleStateHandler;
import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;

public final class EchoServer {
  private static final long IDLE_SECONDS = 3600; // tether's idle_reaper{.read_idle = 1h} in the same benchmark
  private static final int MAX_LINE_LENGTH = 64 * 1024;

  @ChannelHandler.Sharable
  private static final class Echo extends ChannelInboundHandlerAdapter {
    @Override
    public void channelRead(ChannelHandlerContext context, Object line) {
      context.writeAndFlush(line);
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext context, Object event) {
      if (event instanceof IdleStateEvent) {
        context.close();
      }
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext context, Throwable cause) {
      context.close();
    }
  }

  public static void main(String[] arguments) throws InterruptedException {
    EventLoopGroup acceptors = new NioEventLoopGroup(1);
    EventLoopGroup workers = new NioEventLoopGroup();
    Echo echo = new Echo();
    try {
      ServerBootstrap bootstrap = new ServerBootstrap()
          .group(acceptors, workers)
          .channel(NioServerSocketChannel.class)
          .option(ChannelOption.SO_BACKLOG, 1024)
          .childOption(ChannelOption.SO_KEEPALIVE, true)
          .childOption(ChannelOption.TCP_NODELAY, true)
          .childHandler(new ChannelInitializer<SocketChannel>() {
            @Override
            protected void initChannel(SocketChannel channel) {
              channel.pipeline()
                  .addLast(new IdleStateHandler(IDLE_SECONDS, 0, 0, TimeUnit.SECONDS))
                  .addLast(new LineBasedFrameDecoder(MAX_LINE_LENGTH, false, true))
                  .addLast(echo);
            }
          });
      Channel server = bootstrap.bind(new InetSocketAddress("127.0.0.1", 0)).sync().channel();
      System.out.println("port " + ((InetSocketAddress) server.localAddress()).getPort());
      System.out.flush();
      server.closeFuture().sync();
    } finally {
      acceptors.shutdownGracefully();
      workers.shutdownGracefully();
    }
  }
}
